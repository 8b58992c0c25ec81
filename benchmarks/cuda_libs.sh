# Sourced by the GPU scripts: puts the CUDA 13 libraries (libcublas,
# libnvrtc) on LD_LIBRARY_PATH, from the system, the toolkit, or
# PyTorch's wheels (site-packages/nvidia/*/lib). Needs $py.
extra=$("$py" - <<'PY' 2>/dev/null || true
import glob, os, site
dirs = set()
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in ("libcublas.so.*", "libnvrtc.so.*"):
        for f in glob.glob(os.path.join(sp, "nvidia", "*", "lib", lib)):
            dirs.add(os.path.dirname(f))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${extra}${extra:+:}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
