package dev.edgekeras.core;

import java.util.List;

/**
 * A model card checked for the app: one image input (float32 or int8) with exact preprocessing, and an output of
 * one score per label that says whether it holds probabilities or logits. Made by {@link ModelCard#imageClassifier()}.
 */
public final class ClassifierSpec {
    static final String GRAYSCALE_FORMULA = "0.299 * R + 0.587 * G + 0.114 * B";

    public final ModelCard card;
    public final TensorSpec input;
    public final TensorSpec output;
    /** The labelled output's position among the model's outputs. */
    public final int outputIndex;
    public final int height;
    public final int width;
    public final int channels;
    public final Preprocessing preprocessing;
    public final List<String> labels;

    private ClassifierSpec(ModelCard card, TensorSpec input, TensorSpec output, int outputIndex, int height,
                           int width, int channels) {
        this.card = card;
        this.input = input;
        this.output = output;
        this.outputIndex = outputIndex;
        this.height = height;
        this.width = width;
        this.channels = channels;
        this.preprocessing = card.preprocessing;
        this.labels = card.labels;
    }

    /** True when the model takes int8 (quantized) input. */
    public boolean int8Input() {
        return "int8".equals(input.dtype);
    }

    /** One line for people: mode, input, preprocessing, classes. */
    public String describe() {
        Preprocessing p = preprocessing;
        String quant = int8Input() ? " (scale " + input.quantization.scale + ", zero point "
                + input.quantization.zeroPoint + ")" : "";
        String image = channels == 3 ? "RGB image (" + p.channelOrder.toUpperCase(java.util.Locale.ROOT) + " order)"
                : "grayscale image";
        return card.mode + ": " + height + "x" + width + " " + image + ", " + input.dtype + " input" + quant
                + ", preprocessing '" + p.name + "', " + labels.size() + " classes (" + output.kind + ")";
    }

    static ClassifierSpec of(ModelCard card) throws CardException {
        String fixExport = "the demo runs image classifiers: one image input (height, width, 1 or 3 channels) and "
                + "class scores";
        String regenerate = "regenerate the model and its card with edgekeras compress";
        if (card.format != null && !"tflite".equals(card.format)) {
            throw new CardException("the card describes a " + card.format + " file; the app runs .tflite files",
                    "bundle a .tflite file with edgekeras android-bundle");
        }
        if (card.inputs.size() != 1) {
            throw new CardException("the model has " + card.inputs.size() + " inputs; the app feeds one image",
                    fixExport);
        }
        TensorSpec in = card.inputs.get(0);
        int[] s = in.shape;
        if (s.length != 4 || !(s[0] == -1 || s[0] == 1) || s[1] < 1 || s[2] < 1 || !(s[3] == 1 || s[3] == 3)) {
            throw new CardException("the input " + in.name + " has shape " + in.shapeText()
                    + ", not an image (batch, height, width, 1 or 3 channels)", fixExport);
        }
        int height = s[1];
        int width = s[2];
        int channels = s[3];
        Preprocessing p = card.preprocessing;
        if (p == null || !("rgb".equals(p.color) || "grayscale".equals(p.color)) || p.imageSize == null) {
            throw new CardException("the card describes no image preprocessing"
                    + (card.schemaVersion < 2 ? " (schema version " + card.schemaVersion + ")" : ""),
                    "export the model with an image preprocessing preset, with this edgekeras");
        }
        if (p.imageSize[0] != height || p.imageSize[1] != width) {
            throw new CardException("the card resizes images to " + p.imageSize[0] + "x" + p.imageSize[1]
                    + " but the input takes " + height + "x" + width, regenerate);
        }
        if (p.isGrayscale() != (channels == 1)) {
            throw new CardException("the card says color " + p.color + " but the input has " + channels
                    + " channel(s)", regenerate);
        }
        if (!(p.mean.length == 1 || p.mean.length == channels) || !(p.std.length == 1 || p.std.length == channels)) {
            throw new CardException("the card's preprocessing has " + p.mean.length + " mean and " + p.std.length
                    + " std values for an input of " + channels + " channel(s)",
                    "give one value for all channels or one per channel");
        }
        if (channels == 3 && !("rgb".equals(p.channelOrder) || "bgr".equals(p.channelOrder))) {
            throw new CardException("the card gives no channel order (rgb or bgr) for a 3-channel input", regenerate);
        }
        if (!"bilinear".equals(p.resizeMethod) || !Boolean.FALSE.equals(p.resizeAntialias)
                || !(p.resizeCoordinates == null || "half_pixel".equals(p.resizeCoordinates))
                || !(p.resizeEdges == null || "clamp".equals(p.resizeEdges))) {
            throw new CardException("the card asks for a resize the app does not implement (method "
                    + p.resizeMethod + ", antialias " + p.resizeAntialias + ", coordinates " + p.resizeCoordinates
                    + "); the app resizes bilinearly, half-pixel centres, no antialiasing", regenerate);
        }
        if (channels == 1 && (p.grayscale == null || !p.grayscale.contains(GRAYSCALE_FORMULA))) {
            throw new CardException("the card's grayscale formula (" + p.grayscale + ") is not the one the app "
                    + "implements (L = " + GRAYSCALE_FORMULA + ")", regenerate);
        }
        checkDtype(in, "input");
        if (in.dtype.equals("int8") && !"half_to_even".equals(card.roundingMode)) {
            throw new CardException("the card gives rounding " + card.roundingMode + " for the int8 input; the app "
                    + "quantizes as LiteRT's default kernels do (half_to_even) and needs the card to say so",
                    regenerate);
        }
        if (card.labels == null || card.labels.isEmpty()) {
            throw new CardException("the card has no labels, so the app cannot name the classes",
                    "train with class names and export again: the labels travel in the cards");
        }
        TensorSpec out = card.labelledOutput();
        if (card.labelsOutput != null && (out == null || !out.name.equals(card.labelsOutput))) {
            throw new CardException("the card says the labels belong to output " + card.labelsOutput
                    + ", which it does not list", regenerate);
        }
        if (out == null) {
            throw new CardException("the card lists no outputs", regenerate);
        }
        int[] os = out.shape;
        if (os.length != 2 || !(os[0] == -1 || os[0] == 1) || os[1] != card.labels.size()) {
            throw new CardException("the output " + out.name + " has shape " + out.shapeText() + ", but the card has "
                    + card.labels.size() + " labels (one score per label expected)", fixExport);
        }
        checkDtype(out, "output");
        if (!"probabilities".equals(out.kind) && !"logits".equals(out.kind)) {
            if (out.kind == null) {
                throw new CardException("the card does not say whether output " + out.name + " holds probabilities "
                        + "or logits (outputs[].kind is null); the app applies softmax to logits only and does not "
                        + "guess", "regenerate the card with an edgekeras that records outputs[].kind");
            }
            throw new CardException("the output " + out.name + " holds " + out.kind + ", not class scores", fixExport);
        }
        return new ClassifierSpec(card, in, out, card.outputs.indexOf(out), height, width, channels);
    }

    private static void checkDtype(TensorSpec t, String what) throws CardException {
        if (!"float32".equals(t.dtype) && !"int8".equals(t.dtype)) {
            throw new CardException("the " + what + " " + t.name + " is " + t.dtype + "; the app feeds and reads "
                    + "float32 and int8 tensors", "export float32 or int8 files (edgekeras compress --int8)");
        }
        if ("int8".equals(t.dtype) && (t.quantization == null || !(t.quantization.scale > 0))) {
            throw new CardException("the card gives no quantization (scale, zero point) for the int8 " + what + " "
                    + t.name, "regenerate the model and its card with edgekeras compress");
        }
    }
}
