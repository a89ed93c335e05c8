"""Writers and readers for the formats `blip_core` does not write itself."""
