"""Running code: render the script, run it locally or on Modal under a watchdog, classify how it failed."""
