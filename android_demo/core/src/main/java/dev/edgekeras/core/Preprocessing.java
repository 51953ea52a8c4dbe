package dev.edgekeras.core;

import org.json.JSONArray;
import org.json.JSONObject;

/**
 * The card's {@code preprocessing}: how image pixels become the model input (see {@link ImagePreprocessor}).
 * Fields the core does not use are ignored; {@code null} stands for a field the card leaves out or sets to null.
 */
public final class Preprocessing {
    public final String name;
    /** One value for all channels, or one per input channel (in the input's channel order), as float32. */
    public final float[] mean;
    public final float[] std;
    /** "rgb", "bgr", or null (1-channel inputs). */
    public final String channelOrder;
    /** "rgb", "grayscale", or null (not an image). */
    public final String color;
    /** [height, width] the image is resized to, or null. */
    public final int[] imageSize;
    /** The card's grayscale formula (1-channel models), or null. */
    public final String grayscale;
    public final String resizeMethod;
    public final Boolean resizeAntialias;
    public final String resizeCoordinates;
    public final String resizeEdges;

    Preprocessing(String name, float[] mean, float[] std, String channelOrder, String color, int[] imageSize,
                  String grayscale, String resizeMethod, Boolean resizeAntialias, String resizeCoordinates,
                  String resizeEdges) {
        this.name = name;
        this.mean = mean;
        this.std = std;
        this.channelOrder = channelOrder;
        this.color = color;
        this.imageSize = imageSize;
        this.grayscale = grayscale;
        this.resizeMethod = resizeMethod;
        this.resizeAntialias = resizeAntialias;
        this.resizeCoordinates = resizeCoordinates;
        this.resizeEdges = resizeEdges;
    }

    /**
     * Read a card's {@code preprocessing} object.
     *
     * @throws CardException a required field is missing or has the wrong type
     */
    public static Preprocessing fromJson(JSONObject o, String where) throws CardException {
        String name = Json.requiredString(o, "name", where);
        float[] mean = Json.floats(Json.requiredArray(o, "mean", where), where + ".mean");
        float[] std = Json.floats(Json.requiredArray(o, "std", where), where + ".std");
        if (mean.length == 0 || std.length == 0) {
            throw new CardException(where + ": mean and std need at least one value");
        }
        for (float s : std) {
            if (!(s > 0)) {
                throw new CardException(where + ".std: every value must be > 0, got " + s);
            }
        }
        int[] size = null;
        JSONArray a = Json.array(o, "image_size", where);
        if (a != null) {
            if (a.length() != 2) {
                throw new CardException(where + ".image_size: expected [height, width], got " + a);
            }
            size = new int[] {Json.integer(a.opt(0), where + ".image_size[0]"),
                Json.integer(a.opt(1), where + ".image_size[1]")};
        }
        JSONObject r = Json.object(o, "resize", where);
        return new Preprocessing(name, mean, std, Json.string(o, "channel_order", where), Json.string(o, "color", where),
                size, Json.string(o, "grayscale", where), Json.string(r, "method", where + ".resize"),
                Json.bool(r, "antialias", where + ".resize"), Json.string(r, "coordinates", where + ".resize"),
                Json.string(r, "edges", where + ".resize"));
    }

    /** True for 1-channel (grayscale) images. */
    public boolean isGrayscale() {
        return "grayscale".equals(color);
    }

    /** True when the input's channels are the pixels' B, G, R. */
    public boolean isBgr() {
        return "bgr".equals(channelOrder);
    }
}
