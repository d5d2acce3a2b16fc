/*
** cuda_none.c: the CUDA backend of a build without nvcc. It exists so that
** the library, the CLI and the tests build and link on machines without the
** CUDA toolkit; infsim_kernels_cuda_available() is then false and opening a
** CUDA context fails with INFSIM_ENODEV.
*/
#include "internal.h"

const ik_backend *ik_cuda_backend(void) { return NULL; }
bool ik_cuda_usable(void) { return false; }
