package dev.edgekeras.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/**
 * The labelled output -> class scores -> top-k, as the card says: dequantize int8 outputs, softmax only when the
 * output's kind is "logits" (in double), then the k highest scores, equal scores in class order (lower index
 * first), as {@code edgekeras.android.top_k} does.
 */
public final class Postprocessor {
    private final TensorSpec output;
    private final List<String> labels;

    public Postprocessor(ClassifierSpec spec) {
        this(spec.output, spec.labels);
    }

    public Postprocessor(TensorSpec output, List<String> labels) {
        this.output = output;
        this.labels = labels;
    }

    /** Scores of a float32 output. */
    public double[] scores(float[] raw) {
        checkLength(raw.length);
        double[] s = new double[raw.length];
        for (int i = 0; i < raw.length; i++) {
            s[i] = raw[i];
        }
        return "logits".equals(output.kind) ? softmax(s) : s;
    }

    /** Scores of an int8 output: dequantized first. */
    public double[] scores(byte[] raw) {
        if (output.quantization == null) {
            throw new IllegalStateException("output " + output.name + " is int8 without quantization");
        }
        return scores(Quantizer.dequantize(raw, output.quantization));
    }

    /** The k best classes of a float32 output. */
    public List<Prediction> topK(float[] raw, int k) {
        return topK(scores(raw), k);
    }

    /** The k best classes of an int8 output. */
    public List<Prediction> topK(byte[] raw, int k) {
        return topK(scores(raw), k);
    }

    /** The k highest scores, highest first; ties in class order. */
    public List<Prediction> topK(final double[] scores, int k) {
        Integer[] order = new Integer[scores.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, new Comparator<Integer>() {
            @Override
            public int compare(Integer a, Integer b) {
                int byScore = Double.compare(scores[b], scores[a]);
                return byScore != 0 ? byScore : Integer.compare(a, b);
            }
        });
        List<Prediction> out = new ArrayList<Prediction>();
        for (int i = 0; i < Math.min(k, order.length); i++) {
            int c = order[i];
            out.add(new Prediction(c, labels.get(c), scores[c]));
        }
        return Collections.unmodifiableList(out);
    }

    /** Softmax in double: exp(x - max) / sum. */
    public static double[] softmax(double[] x) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : x) {
            max = Math.max(max, v);
        }
        double[] e = new double[x.length];
        double sum = 0;
        for (int i = 0; i < x.length; i++) {
            e[i] = Math.exp(x[i] - max);
            sum += e[i];
        }
        for (int i = 0; i < x.length; i++) {
            e[i] /= sum;
        }
        return e;
    }

    private void checkLength(int n) {
        if (n != labels.size()) {
            throw new IllegalArgumentException("output " + output.name + " has " + n + " scores, the card "
                    + labels.size() + " labels");
        }
    }
}
