package dev.edgekeras.demo;

import android.graphics.Bitmap;
import android.graphics.ColorSpace;
import android.os.Build;

import java.nio.ByteBuffer;

import dev.edgekeras.core.PixelSource;

/**
 * A decoded Bitmap as the core's {@link PixelSource}: the 8-bit values stored in the bitmap, as edgekeras'
 * Python runtime (PIL) reads them from the file, with no colour management.
 *
 * <p>The bitmap must be ARGB_8888 and decoded with {@code inPremultiplied = false} (exact values where alpha is
 * below 255). sRGB bitmaps are read with {@code getPixel}; a bitmap in another colour space (a wide-gamut photo
 * whose profile the decoder kept) is read from its raw memory instead, because {@code getPixel} would convert it to
 * sRGB and PIL does not convert.
 */
final class BitmapPixels implements PixelSource {
    private final Bitmap bitmap;
    private final byte[] rgba;  // raw R, G, B, A bytes for non-sRGB bitmaps, else null

    BitmapPixels(Bitmap bitmap) {
        if (bitmap.getConfig() != Bitmap.Config.ARGB_8888) {
            throw new IllegalArgumentException("expected an ARGB_8888 bitmap, got " + bitmap.getConfig());
        }
        this.bitmap = bitmap;
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O && bitmap.getColorSpace() != null
                && !bitmap.getColorSpace().equals(ColorSpace.get(ColorSpace.Named.SRGB))) {
            ByteBuffer buf = ByteBuffer.allocate(bitmap.getByteCount());
            bitmap.copyPixelsToBuffer(buf);  // ARGB_8888 memory is R, G, B, A per pixel
            rgba = buf.array();
        } else {
            rgba = null;
        }
    }

    @Override
    public int width() {
        return bitmap.getWidth();
    }

    @Override
    public int height() {
        return bitmap.getHeight();
    }

    @Override
    public int argb(int x, int y) {
        if (rgba == null) {
            return bitmap.getPixel(x, y);
        }
        int i = y * bitmap.getRowBytes() + x * 4;
        return (rgba[i + 3] & 0xff) << 24 | (rgba[i] & 0xff) << 16 | (rgba[i + 1] & 0xff) << 8 | (rgba[i + 2] & 0xff);
    }
}
