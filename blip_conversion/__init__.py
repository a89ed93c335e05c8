"""blip_conversion: checkpoint conversion between formats and frameworks."""
