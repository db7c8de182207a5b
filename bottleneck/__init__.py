"""The engine behind retrain.py and label_image.py.

``bottleneck`` is also the name of an optional NumPy accelerator that pandas
imports when it can find it.  With the repository root on ``sys.path`` (any
script run from it, retrain.py itself, pytest), pandas finds this package
instead and would fail on its missing version.  A version older than any
release of the accelerator makes pandas pass over it, as pandas does for any
optional dependency that is too old; the note pandas would print about that is
silenced here, because nothing is wrong.
"""
import warnings

__version__ = "0"  # not a release number: only what pandas needs to pass over this package

warnings.filterwarnings(
    "ignore", message=r"Pandas requires version '[^']*' or newer of 'bottleneck'", category=UserWarning
)
