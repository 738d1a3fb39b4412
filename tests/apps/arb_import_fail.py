"""A module that fails to import (for the boot failure test)."""

raise RuntimeError("arb_import_fail: deliberately broken at import")
