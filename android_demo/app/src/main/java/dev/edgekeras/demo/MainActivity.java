package dev.edgekeras.demo;

import android.content.ActivityNotFoundException;
import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.os.SystemClock;
import android.util.Log;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.TextView;

import androidx.activity.result.ActivityResultLauncher;
import androidx.activity.result.PickVisualMediaRequest;
import androidx.activity.result.contract.ActivityResultContracts;
import androidx.appcompat.app.AppCompatActivity;
import androidx.appcompat.widget.SwitchCompat;
import androidx.core.content.FileProvider;

import com.google.ai.edge.litert.LiteRtException;

import org.json.JSONException;
import org.json.JSONObject;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import dev.edgekeras.core.CardException;
import dev.edgekeras.core.ClassifierSpec;
import dev.edgekeras.core.Hashes;
import dev.edgekeras.core.ImagePreprocessor;
import dev.edgekeras.core.InputTensor;
import dev.edgekeras.core.ModelCard;
import dev.edgekeras.core.Postprocessor;
import dev.edgekeras.core.Prediction;

/**
 * One screen: pick an image or take a photo, run the bundled model, show the top-3 classes and the inference time.
 * Everything about feeding the model comes from its card, through the pure-Java core (dev.edgekeras.core); this
 * class only wires the core to the gallery, the camera and LiteRT. Model work runs on one worker thread.
 */
public final class MainActivity extends AppCompatActivity {
    private static final String TAG = "edgekeras";
    /** Asset names written by `edgekeras android-bundle`. */
    static final String MODEL_ASSET = "model.tflite";
    static final String CARD_ASSET = "model.tflite.edgekeras.json";
    static final String INFO_ASSET = "bundle.json";
    private static final int TOP_K = 3;
    private static final int TIMED_RUNS = 10;
    /** Larger images are decoded at 1/2, 1/4... size (a 4-byte pixel each, twice: the bitmap and a raw copy). */
    private static final long MAX_DECODE_PIXELS = 24_000_000L;
    private static final int DISPLAY_SIDE = 1024;

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler ui = new Handler(Looper.getMainLooper());

    // worker thread only
    private ClassifierSpec spec;
    private ImagePreprocessor preprocessor;
    private Postprocessor postprocessor;
    private LiteRtModel model;

    // main thread only
    private Uri lastImage;
    private Uri photoUri;
    private boolean settingSwitch;
    private TextView modelInfo;
    private TextView imageInfo;
    private TextView results;
    private TextView timing;
    private TextView status;
    private ImageView imageView;
    private Button pickButton;
    private Button photoButton;
    private SwitchCompat gpuSwitch;

    private final ActivityResultLauncher<PickVisualMediaRequest> pickImage = registerForActivityResult(
            new ActivityResultContracts.PickVisualMedia(), uri -> {
                if (uri != null) {
                    classify(uri);
                }
            });

    private final ActivityResultLauncher<Uri> takePhoto = registerForActivityResult(
            new ActivityResultContracts.TakePicture(), saved -> {
                if (Boolean.TRUE.equals(saved) && photoUri != null) {
                    classify(photoUri);
                }
            });

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        modelInfo = findViewById(R.id.model_info);
        imageInfo = findViewById(R.id.image_info);
        results = findViewById(R.id.results);
        timing = findViewById(R.id.timing);
        status = findViewById(R.id.status);
        imageView = findViewById(R.id.image);
        pickButton = findViewById(R.id.pick_image);
        photoButton = findViewById(R.id.take_photo);
        gpuSwitch = findViewById(R.id.use_gpu);

        pickButton.setOnClickListener(v -> pickImage.launch(new PickVisualMediaRequest.Builder()
                .setMediaType(ActivityResultContracts.PickVisualMedia.ImageOnly.INSTANCE)
                .build()));
        photoButton.setOnClickListener(v -> startCamera());
        gpuSwitch.setOnCheckedChangeListener((button, checked) -> {
            if (!settingSwitch) {
                switchAccelerator(checked);
            }
        });
        worker.execute(this::loadBundle);
    }

    @Override
    protected void onDestroy() {
        super.onDestroy();
        worker.execute(() -> {
            if (model != null) {
                model.close();
                model = null;
            }
        });
        worker.shutdown();
    }

    // -- the bundled model (worker thread) ------------------------------------------------------------------------
    private void loadBundle() {
        try {
            ModelCard card = ModelCard.parse(readAsset(CARD_ASSET));
            ClassifierSpec s = card.imageClassifier();
            checkCardDescribesModel(card);
            LiteRtModel m = LiteRtModel.open(getAssets(), MODEL_ASSET, false);
            if (m.inputCount() != 1 || m.outputCount() != card.outputs.size()) {
                m.close();
                throw new CardException("the model has " + m.inputCount() + " input(s) and " + m.outputCount()
                        + " output(s); its card lists " + card.inputs.size() + " and " + card.outputs.size(),
                        "bundle the model and its card again with edgekeras android-bundle");
            }
            spec = s;
            preprocessor = new ImagePreprocessor(s);
            postprocessor = new Postprocessor(s);
            model = m;
            String info = getString(R.string.model_info, bundleSource(card), s.describe());
            for (String w : card.warnings()) {
                info += "\n" + getString(R.string.card_warning, w);
            }
            final String shown = info;
            ui.post(() -> {
                modelInfo.setText(shown);
                pickButton.setEnabled(true);
                photoButton.setEnabled(getPackageManager().hasSystemFeature(PackageManager.FEATURE_CAMERA_ANY));
                gpuSwitch.setEnabled(true);
            });
        } catch (FileNotFoundException e) {
            showError(getString(R.string.error_bundle, "no model in the app's assets (" + e.getMessage() + "); run "
                    + "`edgekeras android-bundle MODEL.tflite --app android_demo` and build again"));
        } catch (CardException | IOException | LiteRtException e) {
            Log.e(TAG, "cannot load the bundled model", e);
            showError(getString(R.string.error_bundle, e.getMessage()));
        }
    }

    /** The card's sha256 must be the bundled model's: a card never describes another file. */
    private void checkCardDescribesModel(ModelCard card) throws IOException, CardException {
        String actual;
        try (InputStream in = getAssets().open(MODEL_ASSET)) {
            actual = Hashes.sha256Hex(in);
        }
        if (card.sha256 == null || !card.sha256.equals(actual)) {
            throw new CardException("the bundled card does not describe the bundled model (card sha256 "
                    + card.sha256 + ", model " + actual + ")", "bundle again with edgekeras android-bundle");
        }
    }

    /** The original file name from bundle.json (written by android-bundle), else the card's. */
    private String bundleSource(ModelCard card) {
        try {
            return new JSONObject(readAsset(INFO_ASSET)).optString("source", card.file);
        } catch (IOException | JSONException e) {
            return card.file;
        }
    }

    private String readAsset(String name) throws IOException {
        try (InputStream in = getAssets().open(name)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n = in.read(buf); n >= 0; n = in.read(buf)) {
                out.write(buf, 0, n);
            }
            return new String(out.toByteArray(), StandardCharsets.UTF_8);
        }
    }

    // -- CPU / GPU ------------------------------------------------------------------------------------------------
    private void switchAccelerator(boolean gpu) {
        gpuSwitch.setEnabled(false);
        final Uri again = lastImage;
        worker.execute(() -> {
            if (model == null || model.gpu == gpu) {
                ui.post(() -> gpuSwitch.setEnabled(true));
                return;
            }
            String failure = null;
            try {
                LiteRtModel next = LiteRtModel.open(getAssets(), MODEL_ASSET, gpu);
                model.close();
                model = next;
            } catch (LiteRtException | RuntimeException e) {
                Log.w(TAG, "cannot compile the model for " + (gpu ? "the GPU" : "the CPU"), e);
                failure = e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
            }
            final String why = failure;
            ui.post(() -> {
                if (why != null && gpu) {
                    setSwitch(false);
                    status.setText(getString(R.string.gpu_unavailable, why));
                    return;  // the switch stays disabled: no GPU here
                }
                if (why != null) {
                    status.setText(getString(R.string.error_run, why));
                }
                gpuSwitch.setEnabled(true);
                if (again != null) {
                    classify(again);
                }
            });
        });
    }

    private void setSwitch(boolean on) {
        settingSwitch = true;
        gpuSwitch.setChecked(on);
        settingSwitch = false;
    }

    // -- images ---------------------------------------------------------------------------------------------------
    private void startCamera() {
        try {
            File dir = new File(getCacheDir(), "photos");
            if (!dir.isDirectory() && !dir.mkdirs()) {
                throw new IOException("cannot create " + dir);
            }
            photoUri = FileProvider.getUriForFile(this, getPackageName() + ".fileprovider", new File(dir, "photo.jpg"));
            takePhoto.launch(photoUri);
        } catch (ActivityNotFoundException e) {
            status.setText(R.string.no_camera);
        } catch (IOException | IllegalArgumentException e) {
            status.setText(getString(R.string.error_image, e.getMessage()));
        }
    }

    private void classify(Uri uri) {
        lastImage = uri;
        status.setText("");
        results.setText(R.string.classifying);
        worker.execute(() -> classifyOnWorker(uri));
    }

    private void classifyOnWorker(Uri uri) {
        if (model == null) {
            return;
        }
        try {
            int[] sample = new int[1];
            Bitmap bitmap = decodeExact(uri, sample);
            Bitmap shown = decodeForDisplay(uri);
            InputTensor input = preprocessor.prepare(new BitmapPixels(bitmap));
            model.write(input);
            model.run();  // warm-up: the first run allocates and prepares kernels
            long total = 0;
            for (int i = 0; i < TIMED_RUNS; i++) {
                long t0 = SystemClock.elapsedRealtimeNanos();
                model.run();
                total += SystemClock.elapsedRealtimeNanos() - t0;
            }
            List<Prediction> top = readTopK();
            double meanMs = total / 1e6 / TIMED_RUNS;
            String accelerator = getString(model.gpu ? R.string.accelerator_gpu : R.string.accelerator_cpu);
            StringBuilder lines = new StringBuilder();
            for (int i = 0; i < top.size(); i++) {
                Prediction p = top.get(i);
                lines.append(i > 0 ? "\n" : "").append(getString(R.string.prediction, i + 1, p.label, p.score));
            }
            String size = sample[0] == 1
                    ? getString(R.string.image_info, bitmap.getWidth(), bitmap.getHeight())
                    : getString(R.string.image_info_sampled, bitmap.getWidth(), bitmap.getHeight(), sample[0]);
            String time = getString(R.string.timing, meanMs, TIMED_RUNS, accelerator);
            bitmap.recycle();
            ui.post(() -> {
                imageView.setImageBitmap(shown);
                imageInfo.setText(size);
                results.setText(lines.toString());
                timing.setText(time);
            });
        } catch (IOException e) {
            showError(getString(R.string.error_image, e.getMessage()));
        } catch (LiteRtException | CardException | RuntimeException e) {
            Log.e(TAG, "inference failed", e);
            showError(getString(R.string.error_run, e.getMessage()));
        }
    }

    /** The labelled output as the card says (int8 or float32), checked against the card's number of labels. */
    private List<Prediction> readTopK() throws LiteRtException, CardException {
        int n;
        List<Prediction> top;
        if ("int8".equals(spec.output.dtype)) {
            byte[] raw = model.readInt8(spec.outputIndex);
            n = raw.length;
            top = n == spec.labels.size() ? postprocessor.topK(raw, TOP_K) : null;
        } else {
            float[] raw = model.readFloat(spec.outputIndex);
            n = raw.length;
            top = n == spec.labels.size() ? postprocessor.topK(raw, TOP_K) : null;
        }
        if (top == null) {
            throw new CardException("output " + spec.output.name + " has " + n + " values; the card has "
                    + spec.labels.size() + " labels", "bundle the model and its card again");
        }
        return top;
    }

    /**
     * The image's 8-bit pixels as stored (ARGB_8888, not premultiplied, no EXIF rotation: the card's decode rule),
     * at full size unless it has more than MAX_DECODE_PIXELS pixels.
     */
    private Bitmap decodeExact(Uri uri, int[] sampleOut) throws IOException {
        BitmapFactory.Options bounds = new BitmapFactory.Options();
        bounds.inJustDecodeBounds = true;
        try (InputStream in = open(uri)) {
            BitmapFactory.decodeStream(in, null, bounds);
        }
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) {
            throw new IOException("not an image this device can decode");
        }
        int sample = 1;
        while ((long) (bounds.outWidth / sample) * (bounds.outHeight / sample) > MAX_DECODE_PIXELS) {
            sample *= 2;
        }
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inPreferredConfig = Bitmap.Config.ARGB_8888;
        o.inPremultiplied = false;
        o.inScaled = false;
        o.inSampleSize = sample;
        Bitmap b;
        try (InputStream in = open(uri)) {
            b = BitmapFactory.decodeStream(in, null, o);
        }
        if (b == null) {
            throw new IOException("not an image this device can decode");
        }
        if (b.getConfig() != Bitmap.Config.ARGB_8888) {
            Bitmap converted = b.copy(Bitmap.Config.ARGB_8888, false);
            b.recycle();
            b = converted;
        }
        sampleOut[0] = sample;
        return b;
    }

    /** A small premultiplied copy for the screen (the exact bitmap cannot be drawn when it has alpha). */
    private Bitmap decodeForDisplay(Uri uri) throws IOException {
        BitmapFactory.Options bounds = new BitmapFactory.Options();
        bounds.inJustDecodeBounds = true;
        try (InputStream in = open(uri)) {
            BitmapFactory.decodeStream(in, null, bounds);
        }
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inSampleSize = 1;
        while (Math.max(bounds.outWidth, bounds.outHeight) / o.inSampleSize > DISPLAY_SIDE) {
            o.inSampleSize *= 2;
        }
        try (InputStream in = open(uri)) {
            return BitmapFactory.decodeStream(in, null, o);
        }
    }

    private InputStream open(Uri uri) throws IOException {
        InputStream in = getContentResolver().openInputStream(uri);
        if (in == null) {
            throw new FileNotFoundException(uri.toString());
        }
        return in;
    }

    private void showError(String message) {
        ui.post(() -> {
            status.setText(message);
            results.setText("");
        });
    }
}
