package dev.edgekeras.core;

import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The Java core against the golden vectors Python wrote ({@code edgekeras android-golden}): the same input tensors
 * (int8: identical bytes; float32: |diff| <= 1e-6) from the same images, and the same top-k from LiteRT's raw
 * outputs. The goldens are regenerated from the current Python code on every run of android_demo/run-jvm-tests,
 * so a change of Python's preprocessing (even by one quantization step) fails here.
 */
public class GoldenTest {
    static final double FLOAT_TOLERANCE = 1e-6;
    static final int SHOWN = 5;
    private static List<Golden> goldens;

    @BeforeClass
    public static void load() throws Exception {
        goldens = Golden.all();
    }

    @Test
    public void inputTensorsMatchPython() throws Exception {
        List<String> problems = new ArrayList<String>();
        int checked = 0;
        for (Golden g : goldens) {
            ImagePreprocessor pre = new ImagePreprocessor(g.spec);
            for (JSONObject c : g.cases()) {
                InputTensor t = pre.prepare(g.image(c));
                String where = g.name + "/" + c.getString("name");
                List<String> found = new ArrayList<String>();
                compareFloats("float input", g.floats(c.getJSONObject("input_float")), t.values, g.spec.width,
                        g.spec.channels, found);
                if (g.spec.int8Input()) {
                    compareInt8("int8 input", g.bytes(c.getJSONObject("input"), "int8"), t.int8,
                            g.floats(c.getJSONObject("input_float")), g.spec.input.quantization, g.spec.width,
                            g.spec.channels, found);
                } else {
                    compareFloats("input", g.floats(c.getJSONObject("input")), t.values, g.spec.width,
                            g.spec.channels, found);
                }
                addCase(where, found, problems);
                checked++;
            }
        }
        report("input tensors differ from Python's", problems);
        assertTrue("no cases checked", checked > 0);
    }

    @Test
    public void variantPreprocessingsMatchPython() throws Exception {
        List<String> problems = new ArrayList<String>();
        int checked = 0;
        for (Golden g : goldens) {
            for (JSONObject v : g.variants()) {
                Preprocessing p = Preprocessing.fromJson(v.getJSONObject("preprocessing"), "variant");
                JSONObject in = v.getJSONObject("input");
                TensorSpec spec = new TensorSpec(g.spec.input.name, g.spec.input.shape, in.getString("dtype"),
                        ModelCard.quantization(in.optJSONObject("quantization"), "variant.quantization"), null);
                ImagePreprocessor pre = new ImagePreprocessor(p, g.spec.height, g.spec.width, g.spec.channels, spec);
                for (JSONObject c : Golden.objects(v.getJSONArray("cases"))) {
                    JSONObject image = new JSONObject().put("image", c.getString("image"));
                    InputTensor t = pre.prepare(g.image(image));
                    String where = g.name + "/" + v.getString("name") + "/" + c.getString("image");
                    float[] pyFloat = g.floats(c.getJSONObject("input_float"));
                    List<String> found = new ArrayList<String>();
                    compareFloats("float input", pyFloat, t.values, g.spec.width, g.spec.channels, found);
                    if ("int8".equals(spec.dtype)) {
                        compareInt8("int8 input", g.bytes(c.getJSONObject("input"), "int8"), t.int8, pyFloat,
                                spec.quantization, g.spec.width, g.spec.channels, found);
                    }
                    addCase(where, found, problems);
                    checked++;
                }
            }
        }
        report("variant input tensors differ from Python's", problems);
        assertTrue("no variant cases checked", checked > 0);
    }

    @Test
    public void topKFromRawOutputsMatchesPython() throws Exception {
        List<String> problems = new ArrayList<String>();
        for (Golden g : goldens) {
            Postprocessor post = new Postprocessor(g.spec);
            int k = g.index.getInt("top_k");
            for (JSONObject c : g.cases()) {
                JSONObject out = c.getJSONObject("output");
                List<Prediction> got = "int8".equals(g.spec.output.dtype)
                        ? post.topK(g.bytes(out, "int8"), k) : post.topK(g.floats(out), k);
                JSONArray want = c.getJSONArray("top_k");
                String where = g.name + "/" + c.getString("name");
                if (got.size() != want.length()) {
                    problems.add(where + ": " + got.size() + " predictions, Python " + want.length());
                    continue;
                }
                for (int i = 0; i < got.size(); i++) {
                    JSONObject w = want.getJSONObject(i);
                    Prediction p = got.get(i);
                    if (p.index != w.getInt("index") || !p.label.equals(w.getString("label"))
                            || Math.abs(p.score - w.getDouble("score")) > FLOAT_TOLERANCE) {
                        problems.add(where + " rank " + (i + 1) + ": java " + p + ", python " + w);
                    }
                }
            }
        }
        report("top-k differs from Python's", problems);
    }

    @Test
    public void pngDecodingMatchesPython() throws Exception {
        List<String> problems = new ArrayList<String>();
        for (Golden g : goldens) {
            for (JSONObject c : g.cases()) {
                ArgbPixels im = g.image(c);
                byte[] py = g.pythonPixels(c);
                int w = im.width();
                for (int i = 0; i < w * im.height(); i++) {
                    int argb = im.argb(i % w, i / w);
                    int[] rgb = {(argb >> 16) & 0xff, (argb >> 8) & 0xff, argb & 0xff};
                    for (int ch = 0; ch < 3; ch++) {
                        if (rgb[ch] != (py[3 * i + ch] & 0xff)) {
                            problems.add(g.name + "/" + c.getString("image") + " pixel " + i + " channel " + ch
                                    + ": ImageIO " + rgb[ch] + ", PIL " + (py[3 * i + ch] & 0xff));
                        }
                    }
                }
            }
        }
        report("ImageIO decodes the PNGs differently from PIL (a test-harness problem, not the core's)", problems);
    }

    /** The goldens hold what issue 12 asks for, so that passing the tests above means something. */
    @Test
    public void goldensCoverFloatAndInt8OfTheSameModelGrayscaleAndRgbResizeAndTies() throws Exception {
        Map<String, Set<String>> modesBySource = new HashMap<String, Set<String>>();
        Set<String> colours = new HashSet<String>();
        for (Golden g : goldens) {
            String source = trainedModel(g.cardJson);
            String key = g.spec.preprocessing.color + " " + source;
            if (!modesBySource.containsKey(key)) {
                modesBySource.put(key, new HashSet<String>());
            }
            modesBySource.get(key).add(g.spec.input.dtype);
            boolean resized = false;
            int ties = 0;
            int near = 0;
            for (JSONObject c : g.cases()) {
                resized |= c.getBoolean("resized");
                ties += c.getInt("ties");
                near += c.getInt("near_ties");
            }
            assertTrue(g.name + ": no case whose image size differs from the model's input", resized);
            if (g.spec.int8Input()) {
                assertTrue(g.name + ": no int8 input value exactly on a rounding tie", ties > 0);
                assertTrue(g.name + ": no int8 input value next to a rounding tie", near > 0);
            }
        }
        for (Map.Entry<String, Set<String>> e : modesBySource.entrySet()) {
            if (e.getValue().contains("float32") && e.getValue().contains("int8")) {
                colours.add(e.getKey().split(" ")[0]);
            }
        }
        assertTrue("no float32 + int8 goldens of the same grayscale model: " + modesBySource.keySet(),
                colours.contains("grayscale"));
        assertTrue("no float32 + int8 goldens of the same RGB model: " + modesBySource.keySet(),
                colours.contains("rgb"));
    }

    /**
     * The int8 goldens would catch the usual mistakes: Math.round (half up) instead of half to even, and the
     * product x / scale in double instead of float32 (each gives other bytes for some golden input).
     */
    @Test
    public void int8GoldensCatchHalfUpRoundingAndDoubleArithmetic() throws Exception {
        for (Golden g : goldens) {
            if (!g.spec.int8Input()) {
                continue;
            }
            Quantization q = g.spec.input.quantization;
            int halfUp = 0;
            int inDouble = 0;
            for (JSONObject c : g.cases()) {
                float[] x = g.floats(c.getJSONObject("input_float"));
                byte[] py = g.bytes(c.getJSONObject("input"), "int8");
                for (int i = 0; i < x.length; i++) {
                    float inv = 1.0f / (float) q.scale;
                    if (clampInt8(Math.round(x[i] * inv) + q.zeroPoint) != py[i]) {
                        halfUp++;
                    }
                    if (clampInt8(Math.rint((double) x[i] / q.scale) + q.zeroPoint) != py[i]) {
                        inDouble++;
                    }
                }
            }
            assertTrue(g.name + ": no golden input where Math.round differs from half to even", halfUp > 0);
            assertTrue(g.name + ": no golden input where double arithmetic differs from float32", inDouble > 0);
        }
    }

    private static byte clampInt8(double v) {
        return (byte) Math.max(-128, Math.min(127, (int) v));
    }

    /** The sha256 of the trained model a file was converted from (the card's "load" step), or its file name. */
    private static String trainedModel(JSONObject card) throws Exception {
        JSONArray steps = card.optJSONArray("steps");
        for (int i = 0; steps != null && i < steps.length(); i++) {
            JSONObject s = steps.getJSONObject(i);
            if ("load".equals(s.optString("step")) && s.optJSONObject("settings") != null
                    && s.getJSONObject("settings").has("sha256")) {
                return s.getJSONObject("settings").getString("sha256");
            }
        }
        return card.getString("file");
    }

    private static void compareFloats(String where, float[] python, float[] java, int width, int channels,
                                      List<String> problems) {
        if (python.length != java.length) {
            problems.add(where + ": " + java.length + " values, Python " + python.length);
            return;
        }
        int bad = 0;
        String first = null;
        for (int i = 0; i < python.length; i++) {
            if (!(Math.abs(python[i] - java[i]) <= FLOAT_TOLERANCE)) {
                if (bad++ == 0) {
                    first = "first at " + Golden.position(i, width, channels) + ": python " + python[i] + ", java "
                            + java[i];
                }
            }
        }
        if (bad > 0) {
            problems.add(where + ": " + bad + " of " + python.length + " values differ by more than "
                    + FLOAT_TOLERANCE + "; " + first);
        }
    }

    private static void compareInt8(String where, byte[] python, byte[] java, float[] pythonFloat, Quantization q,
                                    int width, int channels, List<String> problems) {
        if (python.length != java.length) {
            problems.add(where + ": " + java.length + " values, Python " + python.length);
            return;
        }
        int bad = 0;
        String first = null;
        for (int i = 0; i < python.length; i++) {
            if (python[i] != java[i] && bad++ == 0) {
                float product = pythonFloat[i] * (1.0f / (float) q.scale);
                first = "first at " + Golden.position(i, width, channels) + ": python " + python[i] + ", java "
                        + java[i] + " (float input " + pythonFloat[i] + ", x / scale = " + product + ", zero point "
                        + q.zeroPoint + ")";
            }
        }
        if (bad > 0) {
            problems.add(where + ": " + bad + " of " + python.length + " bytes differ; " + first);
        }
    }

    /** One line per case: "case: problem; problem". */
    private static void addCase(String where, List<String> found, List<String> problems) {
        if (!found.isEmpty()) {
            StringBuilder b = new StringBuilder(where).append(": ");
            for (int i = 0; i < found.size(); i++) {
                b.append(i > 0 ? "; " : "").append(found.get(i));
            }
            problems.add(b.toString());
        }
    }

    private static void report(String what, List<String> problems) {
        if (problems.isEmpty()) {
            return;
        }
        StringBuilder b = new StringBuilder(what + " in " + problems.size() + " case(s):");
        for (int i = 0; i < Math.min(SHOWN, problems.size()); i++) {
            b.append("\n  ").append(problems.get(i));
        }
        if (problems.size() > SHOWN) {
            b.append("\n  ... and ").append(problems.size() - SHOWN).append(" more");
        }
        fail(b.toString());
    }
}
