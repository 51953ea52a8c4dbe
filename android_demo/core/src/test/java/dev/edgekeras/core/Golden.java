package dev.edgekeras.core;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import javax.imageio.ImageIO;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * One folder of golden vectors written by {@code edgekeras android-golden} (its index.json, card.json and raw
 * little-endian .bin files), and the helpers the tests use to read it.
 */
final class Golden {
    static final String PROPERTY = "edgekeras.golden.dir";

    final String name;
    final File dir;
    final JSONObject index;
    final JSONObject cardJson;
    final ModelCard card;
    final ClassifierSpec spec;

    private Golden(File dir) throws IOException, JSONException, CardException {
        this.name = dir.getName();
        this.dir = dir;
        this.index = new JSONObject(text(new File(dir, "index.json")));
        if (!"edgekeras.android-golden".equals(index.getString("format")) || index.getInt("version") != 1) {
            throw new IllegalStateException(dir + "/index.json is not edgekeras.android-golden version 1");
        }
        String cardText = text(new File(dir, index.getString("card")));
        this.cardJson = new JSONObject(cardText);
        this.card = ModelCard.parse(cardText);
        this.spec = card.imageClassifier();
    }

    /** Every golden folder under the folder named by the system property edgekeras.golden.dir. */
    static List<Golden> all() throws Exception {
        String root = System.getProperty(PROPERTY);
        if (root == null || root.isEmpty()) {
            throw new IllegalStateException("no golden vectors: set -D" + PROPERTY + "=DIR, or run "
                    + "android_demo/run-jvm-tests, which generates them with edgekeras android-golden");
        }
        File[] dirs = new File(root).listFiles();
        List<Golden> out = new ArrayList<Golden>();
        if (dirs != null) {
            Arrays.sort(dirs);
            for (File d : dirs) {
                if (new File(d, "index.json").isFile()) {
                    out.add(new Golden(d));
                }
            }
        }
        if (out.isEmpty()) {
            throw new IllegalStateException("no golden vectors under " + root + " (folders with index.json)");
        }
        return out;
    }

    List<JSONObject> cases() throws JSONException {
        return objects(index.getJSONArray("cases"));
    }

    List<JSONObject> variants() throws JSONException {
        return objects(index.getJSONArray("variants"));
    }

    static List<JSONObject> objects(JSONArray a) throws JSONException {
        List<JSONObject> out = new ArrayList<JSONObject>();
        for (int i = 0; i < a.length(); i++) {
            out.add(a.getJSONObject(i));
        }
        return out;
    }

    /** The image of a case, decoded by ImageIO to ARGB (alpha kept, as Android's Bitmap gives it). */
    ArgbPixels image(JSONObject c) throws IOException, JSONException {
        BufferedImage im = ImageIO.read(new File(dir, c.getString("image")));
        if (im == null) {
            throw new IOException("ImageIO cannot read " + c.getString("image"));
        }
        int w = im.getWidth();
        int h = im.getHeight();
        return new ArgbPixels(im.getRGB(0, 0, w, h, null, 0, w), w, h);
    }

    /** The RGB pixels Python decoded from the case's image (pixels.bin, uint8 (h, w, 3)). */
    byte[] pythonPixels(JSONObject c) throws IOException, JSONException {
        return bytes(c.getJSONObject("pixels"), "uint8");
    }

    /** A raw .bin tensor described by {file, dtype, shape}, as bytes, checking its dtype and size. */
    byte[] bytes(JSONObject t, String dtype) throws IOException, JSONException {
        if (!dtype.equals(t.getString("dtype"))) {
            throw new IllegalStateException(name + "/" + t.getString("file") + " is " + t.getString("dtype")
                    + ", expected " + dtype);
        }
        byte[] b = Files.readAllBytes(new File(dir, t.getString("file")).toPath());
        int n = elements(t) * ("float32".equals(dtype) ? 4 : 1);
        if (b.length != n) {
            throw new IllegalStateException(name + "/" + t.getString("file") + " has " + b.length + " bytes, its "
                    + "shape says " + n);
        }
        return b;
    }

    float[] floats(JSONObject t) throws IOException, JSONException {
        byte[] b = bytes(t, "float32");
        float[] out = new float[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
        return out;
    }

    static int elements(JSONObject t) throws JSONException {
        JSONArray shape = t.getJSONArray("shape");
        int n = 1;
        for (int i = 0; i < shape.length(); i++) {
            n *= shape.getInt(i);
        }
        return n;
    }

    static String text(File f) throws IOException {
        return new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
    }

    /** "(y=.., x=.., c=..)" of flat index i in a (1, h, w, c) tensor. */
    static String position(int i, int width, int channels) {
        int c = i % channels;
        int x = (i / channels) % width;
        int y = i / channels / width;
        return "(y=" + y + ", x=" + x + ", c=" + c + ")";
    }
}
