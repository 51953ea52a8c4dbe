package dev.edgekeras.core;

/**
 * Image pixels -> model input, exactly as the card's preprocessing says and as edgekeras' Python runtime does it
 * ({@code edgekeras.preprocess}), so that the tensors are identical bit for bit:
 *
 * <ol>
 *   <li>decode: 8-bit RGB, alpha dropped (the caller decodes; see {@link PixelSource});</li>
 *   <li>1-channel models: L = 0.299 * R + 0.587 * G + 0.114 * B in double (float64), unrounded;</li>
 *   <li>resize to the card's image size when the image's size differs: bilinear, half-pixel centres, no
 *       antialiasing, edges clamped, in double, the card's formula in its order of operations;</li>
 *   <li>float32, channel order (bgr: input channel c takes pixel channel 2 - c), then (x - mean[c]) / std[c] in
 *       float32, mean/std holding one value for all channels or one per input channel;</li>
 *   <li>int8 inputs: {@link Quantizer#quantizeInt8} (half to even, float32).</li>
 * </ol>
 *
 * Java evaluates float and double expressions in IEEE single and double precision without fused multiply-add
 * (strict semantics since Java 17, and on Android's runtime), the same arithmetic numpy uses.
 */
public final class ImagePreprocessor {
    private final Preprocessing p;
    private final int height;
    private final int width;
    private final int channels;
    private final TensorSpec input;

    /** The preprocessing of a checked classifier. */
    public ImagePreprocessor(ClassifierSpec spec) {
        this(spec.preprocessing, spec.height, spec.width, spec.channels, spec.input);
    }

    /**
     * Any preprocessing (e.g. a test variant) for an input of (height, width, channels).
     *
     * @param input the input tensor's dtype and quantization ("float32", or "int8" with quantization)
     */
    public ImagePreprocessor(Preprocessing p, int height, int width, int channels, TensorSpec input) {
        if (channels != 1 && channels != 3) {
            throw new IllegalArgumentException("channels must be 1 or 3, got " + channels);
        }
        if (!(p.mean.length == 1 || p.mean.length == channels) || !(p.std.length == 1 || p.std.length == channels)) {
            throw new IllegalArgumentException("mean/std need 1 or " + channels + " values");
        }
        if ("int8".equals(input.dtype) && input.quantization == null) {
            throw new IllegalArgumentException("an int8 input needs its quantization");
        }
        this.p = p;
        this.height = height;
        this.width = width;
        this.channels = channels;
        this.input = input;
    }

    /** Steps 1-5: the tensor to feed the model. */
    public InputTensor prepare(PixelSource image) {
        float[] x = normalize(pixels(image));
        if ("int8".equals(input.dtype)) {
            return new InputTensor("int8", x, Quantizer.quantizeInt8(x, input.quantization));
        }
        return new InputTensor("float32", x, null);
    }

    /** Steps 1-3 and the float32 cast: pixel values 0-255 (RGB, or luma), (height, width, channels) row-major. */
    public float[] pixels(PixelSource image) {
        int inH = image.height();
        int inW = image.width();
        float[] out = new float[height * width * channels];
        double[] v = new double[channels];
        if (inH == height && inW == width) {
            for (int y = 0; y < height; y++) {
                for (int x = 0; x < width; x++) {
                    values(image.argb(x, y), v);
                    for (int c = 0; c < channels; c++) {
                        out[(y * width + x) * channels + c] = (float) v[c];
                    }
                }
            }
            return out;
        }
        Axis ay = new Axis(inH, height);
        Axis ax = new Axis(inW, width);
        double[] p00 = new double[channels];
        double[] p01 = new double[channels];
        double[] p10 = new double[channels];
        double[] p11 = new double[channels];
        for (int y = 0; y < height; y++) {
            double ty = ay.t[y];
            for (int x = 0; x < width; x++) {
                double tx = ax.t[x];
                values(image.argb(ax.lower[x], ay.lower[y]), p00);
                values(image.argb(ax.upper[x], ay.lower[y]), p01);
                values(image.argb(ax.lower[x], ay.upper[y]), p10);
                values(image.argb(ax.upper[x], ay.upper[y]), p11);
                for (int c = 0; c < channels; c++) {
                    double top = p00[c] + (p01[c] - p00[c]) * tx;
                    double bottom = p10[c] + (p11[c] - p10[c]) * tx;
                    out[(y * width + x) * channels + c] = (float) (top + (bottom - top) * ty);
                }
            }
        }
        return out;
    }

    /** Step 4: pixels (RGB order, or luma) -> model input, float32. */
    public float[] normalize(float[] pixels) {
        boolean bgr = channels == 3 && p.isBgr();
        float[] out = new float[pixels.length];
        for (int i = 0; i < pixels.length; i += channels) {
            for (int c = 0; c < channels; c++) {
                float px = pixels[i + (bgr ? 2 - c : c)];
                float mean = p.mean[p.mean.length == 1 ? 0 : c];
                float std = p.std[p.std.length == 1 ? 0 : c];
                out[i + c] = (px - mean) / std;
            }
        }
        return out;
    }

    /** The channel values of one ARGB pixel in double: R, G, B, or the luma for 1-channel models. */
    private void values(int argb, double[] v) {
        int r = (argb >> 16) & 0xff;
        int g = (argb >> 8) & 0xff;
        int b = argb & 0xff;
        if (channels == 1) {
            v[0] = 0.299 * r + 0.587 * g + 0.114 * b;
        } else {
            v[0] = r;
            v[1] = g;
            v[2] = b;
        }
    }

    /** Source positions of each output position along one axis: lower and upper index, weight of the upper. */
    static final class Axis {
        final int[] lower;
        final int[] upper;
        final double[] t;

        Axis(int inSize, int outSize) {
            double scale = (double) inSize / (double) outSize;
            lower = new int[outSize];
            upper = new int[outSize];
            t = new double[outSize];
            for (int d = 0; d < outSize; d++) {
                double src = ((double) d + 0.5) * scale - 0.5;
                double floor = Math.floor(src);
                lower[d] = (int) Math.max(floor, 0.0);
                upper[d] = (int) Math.min(Math.ceil(src), (double) (inSize - 1));
                t[d] = src - floor;
            }
        }
    }
}
