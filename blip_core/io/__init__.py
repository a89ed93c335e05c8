"""Files, the Hub and the process' output streams: plumbing that knows nothing about BLIP.

Belongs here: resolving a folder or Hub id to local files (`hub`) and its typed errors (`hub_errors`), atomic
writes and staged folders (`atomic`), `push_to_hub` and the `save_pretrained` options every saveable object
shares (`hub_upload`), quieting native libraries' stderr (`native_logs`). It imports nothing else of
`blip_core`; every other sub-package may import it.
"""
