package dev.edgekeras.core;

/**
 * A model input for one image, (1, height, width, channels) row-major: float32 values, or int8 values for
 * quantized inputs (then {@link #values} holds the float input before quantization too).
 */
public final class InputTensor {
    /** "float32" or "int8". */
    public final String dtype;
    /** The float input (after normalization, before quantization). */
    public final float[] values;
    /** The quantized input for int8 models, else null. */
    public final byte[] int8;

    InputTensor(String dtype, float[] values, byte[] int8) {
        this.dtype = dtype;
        this.values = values;
        this.int8 = int8;
    }

    public boolean isInt8() {
        return int8 != null;
    }
}
