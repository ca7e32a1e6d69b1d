"""File formats: ``load_*`` / ``save_*`` per format."""
