package dev.edgekeras.core;

/** Affine quantization of a tensor: real = (q - zeroPoint) * scale. */
public final class Quantization {
    public final double scale;
    public final int zeroPoint;

    public Quantization(double scale, int zeroPoint) {
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    @Override
    public String toString() {
        return "scale " + scale + ", zero point " + zeroPoint;
    }
}
