package dev.edgekeras.core;

/**
 * A model card the core cannot use: missing, malformed, or describing something the app does not implement.
 * The message says what was found and what was expected; {@link #fix()} says what to do (or is null).
 */
public final class CardException extends Exception {
    private static final long serialVersionUID = 1L;
    private final String fix;

    public CardException(String message, String fix) {
        super(fix == null ? message : message + "\nHow to fix: " + fix);
        this.fix = fix;
    }

    public CardException(String message) {
        this(message, null);
    }

    /** What to do about it, or null. */
    public String fix() {
        return fix;
    }
}
