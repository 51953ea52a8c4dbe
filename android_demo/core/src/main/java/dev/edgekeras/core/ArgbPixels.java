package dev.edgekeras.core;

/** A {@link PixelSource} over ARGB ints in row-major order (as {@code Bitmap.getPixels} fills them). */
public final class ArgbPixels implements PixelSource {
    private final int[] argb;
    private final int width;
    private final int height;

    public ArgbPixels(int[] argb, int width, int height) {
        if (width < 1 || height < 1 || argb.length != width * height) {
            throw new IllegalArgumentException("expected " + width + " x " + height + " pixels, got " + argb.length);
        }
        this.argb = argb;
        this.width = width;
        this.height = height;
    }

    /** Pixels from 8-bit RGB bytes (r, g, b per pixel, row-major), alpha set to 255. */
    public static ArgbPixels fromRgb(byte[] rgb, int width, int height) {
        if (rgb.length != width * height * 3) {
            throw new IllegalArgumentException("expected " + (width * height * 3) + " RGB bytes, got " + rgb.length);
        }
        int[] out = new int[width * height];
        for (int i = 0; i < out.length; i++) {
            out[i] = 0xff000000 | (rgb[3 * i] & 0xff) << 16 | (rgb[3 * i + 1] & 0xff) << 8 | (rgb[3 * i + 2] & 0xff);
        }
        return new ArgbPixels(out, width, height);
    }

    @Override
    public int width() {
        return width;
    }

    @Override
    public int height() {
        return height;
    }

    @Override
    public int argb(int x, int y) {
        return argb[y * width + x];
    }
}
