package dev.edgekeras.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * An edgekeras model card ({@code <file>.edgekeras.json}), schema version 2: the fields the app needs.
 *
 * <p>Reading is tolerant as the schema asks: fields this class does not know are ignored, and a card of a newer
 * schema version is read (with a line in {@link #warnings()}) as long as the fields used here are as version 2
 * defines them. Use {@link #imageClassifier()} to check that the card describes an image classifier the core can
 * feed, before running anything.
 */
public final class ModelCard {
    public static final String SCHEMA = "edgekeras.model-card";
    /** The schema version this core was written for. */
    public static final int SCHEMA_VERSION = 2;

    public final int schemaVersion;
    public final String file;
    public final String format;
    public final String mode;
    /** The sha256 of the file the card describes (hex), or null (version 1 cards). */
    public final String sha256;
    public final List<TensorSpec> inputs;
    public final List<TensorSpec> outputs;
    /** null when the card has none (non-image models). */
    public final Preprocessing preprocessing;
    /** {@code rounding.mode}: "half_to_even", "half_away_from_zero", or null when the card has no rounding. */
    public final String roundingMode;
    /** Class names, in the order of the labelled output's scores; null when the card has none. */
    public final List<String> labels;
    /** The output the labels belong to; null means the first output. */
    public final String labelsOutput;
    private final List<String> warnings;

    private ModelCard(int schemaVersion, String file, String format, String mode, String sha256,
                      List<TensorSpec> inputs, List<TensorSpec> outputs, Preprocessing preprocessing,
                      String roundingMode, List<String> labels, String labelsOutput, List<String> warnings) {
        this.schemaVersion = schemaVersion;
        this.file = file;
        this.format = format;
        this.mode = mode;
        this.sha256 = sha256;
        this.inputs = Collections.unmodifiableList(inputs);
        this.outputs = Collections.unmodifiableList(outputs);
        this.preprocessing = preprocessing;
        this.roundingMode = roundingMode;
        this.labels = labels == null ? null : Collections.unmodifiableList(labels);
        this.labelsOutput = labelsOutput;
        this.warnings = Collections.unmodifiableList(warnings);
    }

    /**
     * Parse a card from its JSON text.
     *
     * @throws CardException not JSON, not an edgekeras model card, or a field the core reads is missing or malformed
     */
    public static ModelCard parse(String json) throws CardException {
        JSONObject o;
        try {
            o = new JSONObject(json);
        } catch (JSONException e) {
            throw new CardException("the model card is not valid JSON (" + e.getMessage() + ")",
                    "bundle the card edgekeras wrote beside the model");
        }
        return fromJson(o);
    }

    /** Parse a card from an org.json object (see {@link #parse(String)}). */
    public static ModelCard fromJson(JSONObject o) throws CardException {
        String where = "card";
        if (!SCHEMA.equals(Json.string(o, "schema", where))) {
            throw new CardException("not an edgekeras model card (no \"schema\": \"" + SCHEMA + "\")",
                    "bundle the card edgekeras wrote beside the model");
        }
        if (Json.absent(o, "schema_version")) {
            throw new CardException("the model card has no schema_version", "regenerate it with edgekeras");
        }
        int version = Json.integer(o.opt("schema_version"), where + ".schema_version");
        if (version < 1) {
            throw new CardException("the model card has an invalid schema_version " + version,
                    "regenerate it with edgekeras");
        }
        List<String> warnings = new ArrayList<String>();
        if (version > SCHEMA_VERSION) {
            warnings.add("the model card has schema version " + version + ", newer than this app's ("
                    + SCHEMA_VERSION + "): reading the fields it knows");
        }
        List<TensorSpec> inputs = tensors(Json.requiredArray(o, "inputs", where), where + ".inputs");
        List<TensorSpec> outputs = tensors(Json.requiredArray(o, "outputs", where), where + ".outputs");
        JSONObject pre = Json.object(o, "preprocessing", where);
        JSONObject rounding = Json.object(o, "rounding", where);
        JSONArray labels = Json.array(o, "labels", where);
        return new ModelCard(version, Json.string(o, "file", where), Json.string(o, "format", where),
                Json.string(o, "mode", where), Json.string(o, "sha256", where), inputs, outputs,
                pre == null ? null : Preprocessing.fromJson(pre, where + ".preprocessing"),
                Json.string(rounding, "mode", where + ".rounding"),
                labels == null ? null : Json.strings(labels, where + ".labels"),
                Json.string(o, "labels_output", where), warnings);
    }

    private static List<TensorSpec> tensors(JSONArray a, String where) throws CardException {
        List<TensorSpec> out = new ArrayList<TensorSpec>();
        for (int i = 0; i < a.length(); i++) {
            String w = where + "[" + i + "]";
            Object v = a.opt(i);
            if (!(v instanceof JSONObject)) {
                throw new CardException(w + ": expected an object, got " + v);
            }
            out.add(tensor((JSONObject) v, w));
        }
        return out;
    }

    /** Read one tensor description ({@code name, shape, dtype, quantization, kind}). */
    public static TensorSpec tensor(JSONObject t, String where) throws CardException {
        JSONArray shape = Json.requiredArray(t, "shape", where);
        int[] dims = new int[shape.length()];
        for (int j = 0; j < dims.length; j++) {
            dims[j] = shape.isNull(j) ? -1 : Json.integer(shape.opt(j), where + ".shape[" + j + "]");
        }
        String name = Json.string(t, "name", where);
        return new TensorSpec(name == null ? "" : name, dims, Json.requiredString(t, "dtype", where),
                quantization(Json.object(t, "quantization", where), where + ".quantization"),
                Json.string(t, "kind", where));
    }

    /** Read a {@code quantization} object ({@code scale, zero_point}); null stays null. */
    public static Quantization quantization(JSONObject q, String where) throws CardException {
        if (q == null) {
            return null;
        }
        if (Json.absent(q, "scale") || Json.absent(q, "zero_point")) {
            throw new CardException(where + ": needs scale and zero_point", "regenerate the card with edgekeras");
        }
        return new Quantization(Json.number(q.opt("scale"), where + ".scale"),
                Json.integer(q.opt("zero_point"), where + ".zero_point"));
    }

    /** What the reader noticed but could live with (a newer schema version). */
    public List<String> warnings() {
        return warnings;
    }

    /** The output the labels name: the one called {@link #labelsOutput}, else the first; null if none. */
    public TensorSpec labelledOutput() {
        for (TensorSpec t : outputs) {
            if (t.name.equals(labelsOutput)) {
                return t;
            }
        }
        return outputs.isEmpty() ? null : outputs.get(0);
    }

    /**
     * Check that this card describes an image classifier the core can feed and read, the same checks
     * {@code edgekeras android-bundle} makes.
     *
     * @throws CardException what is missing or not supported, with a fix
     */
    public ClassifierSpec imageClassifier() throws CardException {
        return ClassifierSpec.of(this);
    }
}
