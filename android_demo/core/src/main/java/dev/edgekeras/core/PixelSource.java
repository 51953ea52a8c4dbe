package dev.edgekeras.core;

/**
 * An 8-bit image, read one pixel at a time as ARGB ({@code 0xAARRGGBB}, not premultiplied). Alpha is ignored
 * (the card's decode rule: dropped, not composited). On Android an adapter reads a {@code Bitmap} decoded with
 * {@code inPremultiplied = false}; {@link ArgbPixels} wraps an {@code int[]}.
 */
public interface PixelSource {
    int width();

    int height();

    /** The pixel at column x, row y (0-based, row 0 at the top). */
    int argb(int x, int y);
}
