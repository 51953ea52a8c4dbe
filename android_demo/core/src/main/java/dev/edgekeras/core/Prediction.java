package dev.edgekeras.core;

/** One class of the top-k: its index in the labelled output, its label, its score. */
public final class Prediction {
    public final int index;
    public final String label;
    public final double score;

    public Prediction(int index, String label, double score) {
        this.index = index;
        this.label = label;
        this.score = score;
    }

    @Override
    public String toString() {
        return label + " (" + index + "): " + score;
    }
}
