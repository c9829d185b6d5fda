"""Data sets in CoOp's folder layout. Every module here is imported, so each registers itself."""
import importlib
import pkgutil

import dasslite

dasslite.use_dassl()

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
