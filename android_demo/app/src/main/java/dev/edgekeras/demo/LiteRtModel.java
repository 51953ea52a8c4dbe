package dev.edgekeras.demo;

import android.content.res.AssetManager;

import com.google.ai.edge.litert.Accelerator;
import com.google.ai.edge.litert.CompiledModel;
import com.google.ai.edge.litert.LiteRtException;
import com.google.ai.edge.litert.TensorBuffer;

import java.util.List;

import dev.edgekeras.core.InputTensor;

/**
 * A bundled .tflite file on LiteRT's CompiledModel API (com.google.ai.edge.litert, the `litert` artifact; the GPU
 * accelerator comes from `litert-gpu`). One image in, the outputs read back in the file's order, which is the order
 * of the card's outputs (both are the model signature's). Use from one thread at a time.
 */
final class LiteRtModel implements AutoCloseable {
    final boolean gpu;
    private final CompiledModel model;
    private final List<TensorBuffer> inputs;
    private final List<TensorBuffer> outputs;

    private LiteRtModel(CompiledModel model, boolean gpu) throws LiteRtException {
        this.model = model;
        this.gpu = gpu;
        this.inputs = model.createInputBuffers();
        this.outputs = model.createOutputBuffers();
    }

    /**
     * Compile the asset for the CPU or the GPU. With the GPU, creation fails (LiteRtException) when the device or
     * the APK has no GPU accelerator, or the accelerator cannot run the model: the caller falls back to the CPU.
     */
    static LiteRtModel open(AssetManager assets, String asset, boolean gpu) throws LiteRtException {
        CompiledModel.Options options = new CompiledModel.Options(gpu ? Accelerator.GPU : Accelerator.CPU);
        CompiledModel model = CompiledModel.create(assets, asset, options);
        try {
            return new LiteRtModel(model, gpu);
        } catch (LiteRtException | RuntimeException e) {
            model.close();
            throw e;
        }
    }

    int inputCount() {
        return inputs.size();
    }

    int outputCount() {
        return outputs.size();
    }

    /** Write the image tensor: int8 bytes for quantized inputs, else float32 values. */
    void write(InputTensor t) throws LiteRtException {
        if (t.isInt8()) {
            inputs.get(0).writeInt8(t.int8);
        } else {
            inputs.get(0).writeFloat(t.values);
        }
    }

    void run() throws LiteRtException {
        model.run(inputs, outputs);
    }

    float[] readFloat(int output) throws LiteRtException {
        return outputs.get(output).readFloat();
    }

    byte[] readInt8(int output) throws LiteRtException {
        return outputs.get(output).readInt8();
    }

    @Override
    public void close() {
        for (TensorBuffer b : inputs) {
            b.close();
        }
        for (TensorBuffer b : outputs) {
            b.close();
        }
        model.close();
    }
}
