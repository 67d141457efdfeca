#!/usr/bin/env bash
# Installs what `cargo build --features cuda` needs at build time — nvcc, the
# CUDA headers and the CUDA libraries — from NVIDIA's PyPI packages into a
# local folder (no root, no system CUDA), lays them out the way cudarc and
# candle-kernels look for a CUDA toolkit, and prints the environment to export:
#
#   source <(scripts/setup-cuda.sh)        # or: eval "$(scripts/setup-cuda.sh)"
#   cargo build --release --features cuda
#
# Only the `export` lines go to standard output; progress and errors go to
# standard error, and on an error nothing is printed to standard output (so
# nothing half-set is sourced). Running it again reuses what is installed.
#
# Environment (all optional):
#   PARALLAX_CUDA_DIR      where to install (default: .cuda in the repository)
#   SETUP_CUDA_VERSION  CUDA release, 13.0 to 13.4 (default 13.0: the oldest
#                          CUDA 13 needs the oldest driver; Candle's cudarc
#                          0.19 knows 13.0–13.4, not newer)
#   SETUP_CUDA_WHEELS   a folder of already downloaded wheels: install from
#                          it only (pip --no-index --find-links)
#   CUDA_COMPUTE_CAP       GPU architecture the kernels are compiled for
#                          (default 90: H100/H200); kept when already set
#   PYTHON                 the Python whose pip is used (default python3)
#
# What ends up in $PARALLAX_CUDA_DIR:
#   pip/        the packages as pip installs them (nvidia/cu13/{bin,include,lib,nvvm})
#   toolkit/    the CUDA root the build uses: bin, include, nvvm (links into
#               pip/), lib64 (links to the libraries under their versioned and
#               unversioned names; lib is the same folder) and lib64/stubs
#               (a stub libcuda.so for linking: the driver library does not
#               come from PyPI; the real one comes with the NVIDIA driver)
#   installed   the package list of the last successful install (toolkit/layout:
#               the same for the layout)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${PARALLAX_CUDA_DIR:-$repo/.cuda}
version=${SETUP_CUDA_VERSION:-13.0}
cap=${CUDA_COMPUTE_CAP:-90}
python=${PYTHON:-python3}

log() { echo "setup-cuda: $*" >&2; }
die() {
    echo "setup-cuda: error: $*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

[[ $(uname -s) == Linux && $(uname -m) == x86_64 ]] ||
    die "only x86-64 Linux is supported (NVIDIA's PyPI packages used here are built for it)"
[[ $version =~ ^13\.[0-4]$ ]] ||
    die "SETUP_CUDA_VERSION=$version: expected 13.0 to 13.4 (the releases Candle's cudarc 0.19 supports)"
[[ $cap =~ ^[0-9]{2,3}[af]?$ ]] ||
    die "CUDA_COMPUTE_CAP=$cap: expected a compute capability such as 80, 86, 89 or 90"
have cc || die "no C compiler (cc) found: nvcc needs a host compiler (gcc/g++)"
have c++ || die "no C++ compiler (c++) found: nvcc needs a host compiler (g++)"

# The packages, pinned to one CUDA release. cuBLAS and cuRAND have their own
# version numbers; for 13.0 they are pinned to the ones of that release.
packages=(
    "nvidia-cuda-nvcc==$version.*"
    "nvidia-nvvm==$version.*"
    "nvidia-cuda-crt==$version.*"
    "nvidia-cuda-cccl==$version.*"
    "nvidia-cuda-runtime==$version.*"
    "nvidia-cuda-nvrtc==$version.*"
)
if [[ $version == 13.0 ]]; then
    packages+=("nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*")
else
    packages+=("nvidia-cublas>=13,<14" "nvidia-curand>=10.4,<11")
fi

pip_root=$dir/pip/nvidia/cu13
root=$dir/toolkit

# --- install (skipped when the same package list is already installed) -----
if [[ -x $pip_root/bin/nvcc && -f $dir/installed ]] &&
    [[ $(cat "$dir/installed") == "${packages[*]}" ]]; then
    log "CUDA $version packages already installed in $dir/pip"
else
    have "$python" || die "$python not found (set PYTHON to a Python 3 with pip)"
    "$python" -m pip --version >/dev/null 2>&1 ||
        die "$python has no pip (install it, e.g. apt-get install python3-pip, or set PYTHON)"
    mkdir -p "$dir"
    rm -rf "$dir/pip.new"
    pip_args=(install --quiet --disable-pip-version-check --no-warn-script-location
        --target "$dir/pip.new")
    if [[ -n ${SETUP_CUDA_WHEELS:-} ]]; then
        [[ -d $SETUP_CUDA_WHEELS ]] || die "SETUP_CUDA_WHEELS=$SETUP_CUDA_WHEELS is not a folder"
        pip_args+=(--no-index --find-links "$SETUP_CUDA_WHEELS")
        log "installing CUDA $version packages from $SETUP_CUDA_WHEELS into $dir/pip"
    else
        log "downloading CUDA $version packages from PyPI into $dir/pip (about 1.5 GB unpacked)"
    fi
    if ! PIP_ROOT_USER_ACTION=ignore "$python" -m pip "${pip_args[@]}" "${packages[@]}" >&2; then
        rm -rf "$dir/pip.new"
        die "pip could not install: ${packages[*]}"
    fi
    [[ -x $dir/pip.new/nvidia/cu13/bin/nvcc ]] ||
        die "the packages installed, but nvidia/cu13/bin/nvcc is not among them (has the wheels' layout changed?)"
    rm -rf "$dir/pip"
    mv "$dir/pip.new" "$dir/pip"
    echo "${packages[*]}" >"$dir/installed"
fi

# Everything the build needs, checked before laying anything out.
for f in bin/nvcc bin/ptxas bin/fatbinary nvvm/bin/cicc include/cuda.h include/cuda_runtime.h \
    include/cuda_fp16.h include/cuda_bf16.h include/crt/host_config.h include/curand.h \
    include/cublas_v2.h include/nvrtc.h include/cccl/cuda/std/cstdint \
    lib/libcudart.so.13 lib/libcublas.so.13 lib/libcublasLt.so.13 lib/libnvrtc.so.13 \
    lib/libcurand.so.10; do
    [[ -e $pip_root/$f ]] || die "$pip_root/$f is missing (remove $dir and run again)"
done

# --- the CUDA root: $root/{bin,include,nvvm,lib64,lib} ------------------------
# Laid out again only when the packages or this layout changed, so that running
# the script during a build does not pull the toolkit from under it.
layout="layout 1: ${packages[*]}"
if [[ -f $root/layout && $(cat "$root/layout") == "$layout" && -e $root/lib64/stubs/libcuda.so ]]; then
    log "the CUDA root $root is up to date"
else
    rm -rf "$root.new"
    mkdir -p "$root.new/lib64/stubs"
    ln -s ../pip/nvidia/cu13/bin "$root.new/bin"
    ln -s ../pip/nvidia/cu13/include "$root.new/include"
    ln -s ../pip/nvidia/cu13/nvvm "$root.new/nvvm"
    ln -s lib64 "$root.new/lib"
    for lib in "$pip_root"/lib/lib*.so* "$pip_root"/lib/lib*.a; do
        [[ -e $lib ]] || continue
        name=$(basename "$lib")
        ln -s "../../pip/nvidia/cu13/lib/$name" "$root.new/lib64/$name"
        # libfoo.so.13 -> libfoo.so, what the linker looks for with -lfoo
        if [[ $name =~ ^(lib[^.]+\.so)\.[0-9.]+$ && ! -e $root.new/lib64/${BASH_REMATCH[1]} ]]; then
            ln -s "$name" "$root.new/lib64/${BASH_REMATCH[1]}"
        fi
    done

    # A stub of the driver library (libcuda.so.1), for linking only: every driver
    # API function declared in cuda.h, each returning CUDA_ERROR_STUB_LIBRARY (34):
    # both the names cuda.h's macros map to (cuMemAlloc_v2) and the plain ones,
    # and the profiler's functions (cudaProfiler.h is not in the packages).
    stub_src=$root.new/lib64/stubs/cuda_stub.c
    {
        echo "/* generated by scripts/setup-cuda.sh: link-time stub of libcuda.so.1 */"
        {
            cc -E -P -x c -I "$pip_root/include" "$pip_root/include/cuda.h" | tr '\n' ' ' |
                grep -oE '\bCUresult +cu[A-Za-z0-9_]+ *\(' | grep -oE 'cu[A-Za-z0-9_]+' || true
            grep -ohE 'CUresult +CUDAAPI +cu[A-Za-z0-9_]+' "$pip_root/include/cuda.h" |
                grep -oE 'cu[A-Za-z0-9_]+$' || true
            printf '%s\n' cuProfilerInitialize cuProfilerStart cuProfilerStop
        } | sort -u | sed 's/.*/int &(void) { return 34; }/'
    } >"$stub_src"
    nsyms=$(grep -c 'return 34' "$stub_src" || true)
    ((nsyms > 300)) || die "found only $nsyms driver functions in $pip_root/include/cuda.h (expected hundreds)"
    cc -shared -fPIC -O0 -w -Wl,-soname,libcuda.so.1 -o "$root.new/lib64/stubs/libcuda.so.1" "$stub_src" ||
        die "could not compile the libcuda stub with cc"
    ln -s libcuda.so.1 "$root.new/lib64/stubs/libcuda.so"

    echo "$layout" >"$root.new/layout"
    rm -rf "$root"
    mv "$root.new" "$root"
fi

# --- smoke test: nvcc compiles a kernel with half/bfloat16 and libcu++ -------
smoke=$dir/smoke
mkdir -p "$smoke"
cat >"$smoke/k.cu" <<'EOF'
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda/std/cstdint>
extern "C" __global__ void scale(__nv_bfloat16 *x, __half *y, cuda::std::uint32_t n) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { y[i] = __float2half(2.0f * __bfloat162float(x[i])); }
}
EOF
arch=${cap%[af]}
PATH=$root/bin:$PATH "$root/bin/nvcc" --ptx -std=c++17 -arch="compute_$arch" \
    -o "$smoke/k.ptx" "$smoke/k.cu" >&2 ||
    die "nvcc could not compile a test kernel for compute_$arch (see above)"
nvcc_version=$("$root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
log "ready: nvcc $nvcc_version in $root/bin, kernels for compute capability $cap"
log "note: a CUDA build links libcuda.so.1, which comes with the NVIDIA driver;"
log "      the stub in $root/lib64/stubs is for linking only"

# --- the environment ----------------------------------------------------------
q() { printf '%q' "$1"; }
cat <<EOF
export CUDA_ROOT=$(q "$root")
export CUDA_PATH=$(q "$root")
export CUDA_HOME=$(q "$root")
export CUDA_COMPUTE_CAP=$(q "$cap")
case ":\$PATH:" in *:$(q "$root/bin"):*) ;; *) export PATH=$(q "$root/bin"):\$PATH ;; esac
case ":\${LD_LIBRARY_PATH:-}:" in *:$(q "$root/lib64"):*) ;; *) export LD_LIBRARY_PATH=$(q "$root/lib64")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} ;; esac
EOF
