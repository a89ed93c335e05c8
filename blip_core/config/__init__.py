"""The configuration classes: `BlipVisionConfig`, `BlipTextConfig`, `BlipConfig` (`configuration`), the public
`GenerationConfig` (`generation_config`), reading a checkpoint's JSON settings files with bounds (`json_files`),
and the constants both trees read off a config (`model_constants`: mask value, activations, patch grid).

A config is data: it reads and writes JSON through `blip_core.io` and imports nothing else of `blip_core`.
Everything above it (weights aside) may import it.
"""
