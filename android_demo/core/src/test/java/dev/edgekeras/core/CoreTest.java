package dev.edgekeras.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/** Unit tests of the core on hand-made cards and pixels (the golden tests compare it with Python). */
public class CoreTest {

    /** A valid schema-2 card of an int8 RGB classifier, 2x3 input, 3 labels. */
    static JSONObject card() throws Exception {
        return new JSONObject("{"
                + "\"schema\": \"edgekeras.model-card\", \"schema_version\": 2, \"file\": \"m.int8.tflite\","
                + "\"format\": \"tflite\", \"mode\": \"int8\", \"sha256\": \"" + repeat("ab", 32) + "\","
                + "\"inputs\": [{\"name\": \"image\", \"shape\": [null, 2, 3, 3], \"dtype\": \"int8\","
                + "  \"quantization\": {\"scale\": 0.5, \"zero_point\": 3}, \"kind\": null}],"
                + "\"outputs\": [{\"name\": \"probs\", \"shape\": [null, 3], \"dtype\": \"int8\","
                + "  \"quantization\": {\"scale\": 0.00390625, \"zero_point\": -128}, \"kind\": \"probabilities\"}],"
                + "\"preprocessing\": {\"name\": \"caffe\", \"mean\": [1.0, 2.0, 3.0], \"std\": [1.0, 2.0, 4.0],"
                + "  \"channel_order\": \"bgr\", \"input_range\": null, \"image_size\": [2, 3], \"color\": \"rgb\","
                + "  \"grayscale\": null, \"resize\": {\"method\": \"bilinear\", \"antialias\": false,"
                + "  \"coordinates\": \"half_pixel\", \"edges\": \"clamp\"}},"
                + "\"rounding\": {\"mode\": \"half_to_even\", \"formula\": \"...\"},"
                + "\"labels\": [\"a\", \"b\", \"c\"], \"labels_output\": \"probs\", \"task\": \"classification\"}");
    }

    static String repeat(String s, int n) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < n; i++) {
            b.append(s);
        }
        return b.toString();
    }

    static ClassifierSpec spec(JSONObject card) throws CardException {
        return ModelCard.parse(card.toString()).imageClassifier();
    }

    static void assertRefused(JSONObject card, String expected) throws Exception {
        try {
            spec(card);
            fail("expected a CardException about: " + expected);
        } catch (CardException e) {
            assertTrue("message \"" + e.getMessage() + "\" should mention \"" + expected + "\"",
                    e.getMessage().contains(expected));
        }
    }

    @Test
    public void readsAValidCard() throws Exception {
        ClassifierSpec s = spec(card());
        assertEquals(2, s.height);
        assertEquals(3, s.width);
        assertEquals(3, s.channels);
        assertTrue(s.int8Input());
        assertEquals(0.5, s.input.quantization.scale, 0.0);
        assertEquals(3, s.input.quantization.zeroPoint);
        assertEquals(Arrays.asList("a", "b", "c"), s.labels);
        assertEquals(0, s.outputIndex);
        assertEquals("probabilities", s.output.kind);
        assertTrue(s.card.warnings().isEmpty());
    }

    @Test
    public void unknownFieldsAndANewerSchemaVersionAreRead() throws Exception {
        JSONObject c = card();
        c.put("schema_version", 7);
        c.put("something_new", new JSONObject().put("deep", new JSONArray().put(1)));
        c.getJSONArray("inputs").getJSONObject(0).put("layout", "NHWC");
        c.getJSONObject("preprocessing").put("gamma", 2.2);
        c.getJSONObject("preprocessing").getJSONObject("resize").put("future", true);
        ModelCard m = ModelCard.parse(c.toString());
        assertEquals(7, m.schemaVersion);
        assertEquals(1, m.warnings().size());
        assertTrue(m.warnings().get(0).contains("newer"));
        assertEquals(3, m.imageClassifier().channels);
    }

    @Test
    public void refusesWhatItCannotFeedWithoutGuessing() throws Exception {
        JSONObject c = card();
        c.getJSONArray("outputs").getJSONObject(0).put("kind", JSONObject.NULL);
        assertRefused(c, "probabilities or logits");

        c = card();
        c.getJSONArray("outputs").getJSONObject(0).put("kind", "values");
        assertRefused(c, "not class scores");

        c = card();
        c.remove("rounding");
        assertRefused(c, "half_to_even");

        c = card();
        c.getJSONObject("rounding").put("mode", "half_away_from_zero");
        assertRefused(c, "half_to_even");

        c = card();
        c.put("labels", new JSONArray().put("a").put("b"));
        assertRefused(c, "2 labels");

        c = card();
        c.put("labels", JSONObject.NULL);
        assertRefused(c, "no labels");

        c = card();
        c.getJSONObject("preprocessing").put("channel_order", JSONObject.NULL);  // optString would say "null"
        assertRefused(c, "channel order");

        c = card();
        c.getJSONObject("preprocessing").getJSONObject("resize").put("antialias", true);
        assertRefused(c, "resize");

        c = card();
        c.getJSONObject("preprocessing").put("image_size", new JSONArray().put(3).put(2));
        assertRefused(c, "resizes images to 3x2");

        c = card();
        c.getJSONArray("inputs").getJSONObject(0).put("dtype", "uint8");
        assertRefused(c, "uint8");

        c = card();
        c.getJSONArray("inputs").getJSONObject(0).put("quantization", JSONObject.NULL);
        assertRefused(c, "no quantization");

        c = card();
        c.put("labels_output", "logits");
        assertRefused(c, "does not list");

        c = card();
        c.put("preprocessing", JSONObject.NULL);
        assertRefused(c, "no image preprocessing");
    }

    @Test
    public void refusesWhatIsNotACard() {
        for (String text : new String[] {"{\"schema\": \"something\"}", "not json", "{\"schema\": "
                + "\"edgekeras.model-card\", \"schema_version\": 2}"}) {
            try {
                ModelCard.parse(text);
                fail("parsed " + text);
            } catch (CardException e) {
                assertTrue(e.getMessage(), e.getMessage().length() > 10);
            }
        }
    }

    @Test
    public void quantizesHalfToEvenInFloat32ThenAddsTheZeroPointThenClamps() {
        Quantization q = new Quantization(1.0, 0);
        byte[] got = Quantizer.quantizeInt8(new float[] {2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 1.49999f, 200f,
            -300f}, q);
        assertArrayEquals(new byte[] {2, 4, -2, -4, 0, 0, 1, 127, -128}, got);
        // the zero point is added after rounding: rint(0.5) + 1 = 1, not rint(1.5) = 2
        assertArrayEquals(new byte[] {1}, Quantizer.quantizeInt8(new float[] {0.5f}, new Quantization(1.0, 1)));
        // the product is float32: 0.3f * float32(1 / 0.2f) is 1.5 exactly in float32 (rounds to 2); in double it
        // is 1.4999999776..., which rounds to 1
        float inv = 1.0f / 0.2f;
        assertEquals(1.5f, 0.3f * inv, 0.0f);
        assertArrayEquals(new byte[] {2}, Quantizer.quantizeInt8(new float[] {0.3f}, new Quantization(0.2f, 0)));
        assertArrayEquals(new float[] {-0.5f, 0.0f, 62.0f},
                Quantizer.dequantize(new byte[] {2, 3, 127}, new Quantization(0.5, 3)), 0.0f);
    }

    @Test
    public void normalizesInTheCardsChannelOrderWithPerChannelMeanAndStd() throws Exception {
        ClassifierSpec s = spec(card());
        ImagePreprocessor pre = new ImagePreprocessor(s);
        int[] argb = new int[6];
        Arrays.fill(argb, 0xff0a141e);  // R 10, G 20, B 30
        InputTensor t = pre.prepare(new ArgbPixels(argb, 3, 2));
        // bgr: input channel 0 takes B: (30 - 1) / 1, channel 1 G: (20 - 2) / 2, channel 2 R: (10 - 3) / 4
        assertArrayEquals(new float[] {29f, 9f, 1.75f}, Arrays.copyOf(t.values, 3), 0.0f);
        // int8: rint(x / 0.5) + 3, and 1.75 / 0.5 = 3.5 rounds half to even, to 4
        assertArrayEquals(new byte[] {61, 21, 7}, Arrays.copyOf(t.int8, 3));
    }

    @Test
    public void alphaIsDroppedNotComposited() throws Exception {
        ImagePreprocessor pre = new ImagePreprocessor(spec(card()));
        int[] opaque = new int[6];
        int[] clear = new int[6];
        Arrays.fill(opaque, 0xff0a141e);
        Arrays.fill(clear, 0x000a141e);
        assertArrayEquals(pre.prepare(new ArgbPixels(opaque, 3, 2)).values,
                pre.prepare(new ArgbPixels(clear, 3, 2)).values, 0.0f);
    }

    @Test
    public void resizesBilinearlyWithHalfPixelCentresAndClampedEdges() throws Exception {
        JSONObject c = card();
        c.getJSONObject("preprocessing").put("mean", new JSONArray().put(0.0)).put("std", new JSONArray().put(1.0))
                .put("channel_order", "rgb");
        c.getJSONObject("preprocessing").put("name", "raw");
        c.getJSONArray("inputs").getJSONObject(0).put("dtype", "float32").put("quantization", JSONObject.NULL);
        ImagePreprocessor pre = new ImagePreprocessor(spec(c));
        // 1 x 6 -> 2 x 3: along x, src = (d + 0.5) * 2 - 0.5 = 0.5, 2.5, 4.5: the mean of pixel pairs; along y,
        // src = (d + 0.5) * 0.5 - 0.5 = -0.25, 0.25: both rows clamp to row 0
        int[] row = {0xff000000, 0xff020000, 0xff040000, 0xff070000, 0xff0a0000, 0xff0b0000};
        float[] px = pre.pixels(new ArgbPixels(row, 6, 1));
        float[] red = new float[6];
        for (int i = 0; i < 6; i++) {
            red[i] = px[3 * i];
        }
        assertArrayEquals(new float[] {1f, 5.5f, 10.5f, 1f, 5.5f, 10.5f}, red, 0.0f);
    }

    @Test
    public void grayscaleIsTheBt601LumaInDoubleBeforeResizing() throws Exception {
        JSONObject c = card();
        JSONObject p = c.getJSONObject("preprocessing");
        p.put("color", "grayscale").put("channel_order", JSONObject.NULL).put("mean", new JSONArray().put(0.0))
                .put("std", new JSONArray().put(1.0)).put("grayscale", "L = 0.299 * R + 0.587 * G + 0.114 * B, in "
                + "float64");
        c.getJSONArray("inputs").getJSONObject(0).put("shape", new JSONArray("[null, 2, 3, 1]"))
                .put("dtype", "float32").put("quantization", JSONObject.NULL);
        ClassifierSpec s = spec(c);
        assertEquals(1, s.channels);
        int[] argb = new int[6];
        Arrays.fill(argb, 0xffff0000);
        float[] x = new ImagePreprocessor(s).prepare(new ArgbPixels(argb, 3, 2)).values;
        assertEquals((float) (0.299 * 255), x[0], 0.0f);

        p.put("grayscale", "L = (R + G + B) / 3");
        assertRefused(c, "grayscale formula");
    }

    @Test
    public void softmaxOnlyForLogitsAndTiesInClassOrder() throws Exception {
        List<String> labels = Arrays.asList("a", "b", "c");
        TensorSpec probs = new TensorSpec("p", new int[] {-1, 3}, "float32", null, "probabilities");
        List<Prediction> top = new Postprocessor(probs, labels).topK(new float[] {0.2f, 0.4f, 0.4f}, 3);
        assertEquals(1, top.get(0).index);
        assertEquals(2, top.get(1).index);
        assertEquals(0, top.get(2).index);
        assertEquals(0.4f, top.get(0).score, 0.0);

        TensorSpec logits = new TensorSpec("l", new int[] {-1, 3}, "float32", null, "logits");
        double[] s = new Postprocessor(logits, labels).scores(new float[] {1f, 2f, 3f});
        double sum = Math.exp(1) + Math.exp(2) + Math.exp(3);
        assertEquals(Math.exp(3) / sum, s[2], 1e-12);
        assertEquals(1.0, s[0] + s[1] + s[2], 1e-12);

        TensorSpec int8 = new TensorSpec("q", new int[] {-1, 3}, "int8", new Quantization(0.00390625, -128),
                "probabilities");
        List<Prediction> q = new Postprocessor(int8, labels).topK(new byte[] {-128, 127, -128}, 2);
        assertEquals("b", q.get(0).label);
        assertEquals(255 * 0.00390625, q.get(0).score, 0.0);
        assertEquals("a", q.get(1).label);
        assertEquals(2, q.size());
    }

    @Test
    public void sha256OfAStream() throws Exception {
        String abc = Hashes.sha256Hex(new ByteArrayInputStream("abc".getBytes(StandardCharsets.US_ASCII)));
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", abc);
    }
}
