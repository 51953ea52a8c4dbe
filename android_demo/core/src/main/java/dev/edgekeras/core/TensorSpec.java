package dev.edgekeras.core;

/**
 * One input or output of a model file, as its card describes it. {@code shape} holds -1 for a dimension of any
 * size (the card's null, the batch). {@code kind} (outputs): "probabilities", "logits", "values", or null when the
 * card does not say.
 */
public final class TensorSpec {
    public final String name;
    public final int[] shape;
    public final String dtype;
    public final Quantization quantization;
    public final String kind;

    public TensorSpec(String name, int[] shape, String dtype, Quantization quantization, String kind) {
        this.name = name;
        this.shape = shape.clone();
        this.dtype = dtype;
        this.quantization = quantization;
        this.kind = kind;
    }

    /** The number of elements of one sample (a batch of one): the product of the shape, -1 counted as 1. */
    public int elementsPerSample() {
        int n = 1;
        for (int d : shape) {
            n *= Math.max(d, 1);
        }
        return n;
    }

    /** The shape as the card writes it, e.g. (N, 224, 224, 3). */
    public String shapeText() {
        StringBuilder b = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            b.append(i > 0 ? ", " : "").append(shape[i] < 0 ? "N" : Integer.toString(shape[i]));
        }
        return b.append(")").toString();
    }

    @Override
    public String toString() {
        return name + " " + dtype + " " + shapeText() + (quantization != null ? " (" + quantization + ")" : "")
                + (kind != null ? " " + kind : "");
    }
}
