"""acx's config groups, installed as the package ``acx.conf`` (``acx/conf`` links to this folder, which
stays at the repository's top level): Hydra reads them as ``pkg://acx.conf`` wherever acx is installed."""
