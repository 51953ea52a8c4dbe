package dev.edgekeras.core;

import java.util.ArrayList;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONObject;

/**
 * Typed reads from org.json objects that treat a missing key and JSON null alike and name the field in errors.
 * (Android's {@code optString} returns the text "null" for a JSON null, so it is never used.)
 */
final class Json {
    private Json() {
    }

    static boolean absent(JSONObject o, String key) {
        return o == null || !o.has(key) || o.isNull(key);
    }

    /** A string, or null when missing or null. */
    static String string(JSONObject o, String key, String where) throws CardException {
        if (absent(o, key)) {
            return null;
        }
        Object v = o.opt(key);
        if (!(v instanceof String)) {
            throw new CardException(where + "." + key + ": expected a string, got " + v);
        }
        return (String) v;
    }

    static String requiredString(JSONObject o, String key, String where) throws CardException {
        String s = string(o, key, where);
        if (s == null) {
            throw new CardException(where + ": missing field " + key, "regenerate the card with edgekeras");
        }
        return s;
    }

    /** An object, or null when missing or null. */
    static JSONObject object(JSONObject o, String key, String where) throws CardException {
        if (absent(o, key)) {
            return null;
        }
        Object v = o.opt(key);
        if (!(v instanceof JSONObject)) {
            throw new CardException(where + "." + key + ": expected an object, got " + v);
        }
        return (JSONObject) v;
    }

    /** An array, or null when missing or null. */
    static JSONArray array(JSONObject o, String key, String where) throws CardException {
        if (absent(o, key)) {
            return null;
        }
        Object v = o.opt(key);
        if (!(v instanceof JSONArray)) {
            throw new CardException(where + "." + key + ": expected a list, got " + v);
        }
        return (JSONArray) v;
    }

    static JSONArray requiredArray(JSONObject o, String key, String where) throws CardException {
        JSONArray a = array(o, key, where);
        if (a == null) {
            throw new CardException(where + ": missing field " + key, "regenerate the card with edgekeras");
        }
        return a;
    }

    static Boolean bool(JSONObject o, String key, String where) throws CardException {
        if (absent(o, key)) {
            return null;
        }
        Object v = o.opt(key);
        if (!(v instanceof Boolean)) {
            throw new CardException(where + "." + key + ": expected true or false, got " + v);
        }
        return (Boolean) v;
    }

    static double number(Object v, String where) throws CardException {
        if (!(v instanceof Number)) {
            throw new CardException(where + ": expected a number, got " + v);
        }
        return ((Number) v).doubleValue();
    }

    static int integer(Object v, String where) throws CardException {
        double d = number(v, where);
        if (d != Math.rint(d) || d < Integer.MIN_VALUE || d > Integer.MAX_VALUE) {
            throw new CardException(where + ": expected an integer, got " + v);
        }
        return (int) d;
    }

    /** A list of numbers as float32 (each the double the JSON text denotes, rounded to float32). */
    static float[] floats(JSONArray a, String where) throws CardException {
        float[] out = new float[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) number(a.opt(i), where + "[" + i + "]");
        }
        return out;
    }

    static List<String> strings(JSONArray a, String where) throws CardException {
        List<String> out = new ArrayList<String>();
        for (int i = 0; i < a.length(); i++) {
            Object v = a.opt(i);
            if (!(v instanceof String)) {
                throw new CardException(where + "[" + i + "]: expected a string, got " + v);
            }
            out.add((String) v);
        }
        return out;
    }
}
