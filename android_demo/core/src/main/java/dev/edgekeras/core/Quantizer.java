package dev.edgekeras.core;

/**
 * Quantization as the card's {@code rounding} states it (LiteRT's default kernels: XNNPACK and the optimized
 * QUANTIZE kernel), and dequantization:
 *
 * <pre>
 *   q = clamp(rint(float32(x) * float32(1 / float32(scale))) + zero_point, qmin, qmax)   (float32, half to even)
 *   x = float32(q - zero_point) * float32(scale)
 * </pre>
 *
 * <p>Not {@code Math.round} (half up: 2.5 -> 3, where LiteRT gives 2) and not a double product (it lands on the
 * other side of a tie for some inputs).
 */
public final class Quantizer {
    private Quantizer() {
    }

    /** float input -> int8, half to even, in float32 arithmetic; values clamp to [-128, 127]. */
    public static byte[] quantizeInt8(float[] x, Quantization q) {
        float inv = 1.0f / (float) q.scale;
        float zp = (float) q.zeroPoint;
        byte[] out = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            float product = x[i] * inv;
            float v = (float) Math.rint(product) + zp;
            if (v < -128f) {
                v = -128f;
            } else if (v > 127f) {
                v = 127f;
            }
            out[i] = (byte) (int) v;
        }
        return out;
    }

    /** int8 values -> float32: (q - zero_point) * scale, in float32. */
    public static float[] dequantize(byte[] q, Quantization quant) {
        float zp = (float) quant.zeroPoint;
        float scale = (float) quant.scale;
        float[] out = new float[q.length];
        for (int i = 0; i < q.length; i++) {
            out[i] = ((float) q[i] - zp) * scale;
        }
        return out;
    }
}
