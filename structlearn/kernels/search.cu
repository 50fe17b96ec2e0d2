// The most-violated-pose search of Algorithm 1 (eq. 7) and the MPJPE margin (eq. 8).
//
// Poses are root-relative, (J, 3) per pose, in mm. The margin of example b against candidate c is
// scale * mean_j |y_b,j - cand_c,j|. The fused search takes the score matrix S = f_I f_J^T (one
// cuBLAS GEMM, B x C) and finds, per row, argmax_c S[b, c] + margin(b, c) without materialising
// the B x C margins: stage 1 (most_violated_partial) lets each of P threads per row scan a strided
// share of the candidates, stage 2 (most_violated_reduce) reduces the P partial results per row.
// Ties go to the lower candidate index, as numpy.argmax. No shared memory, no atomics: each thread
// writes only its own outputs (this also lets nn/kernels/emulate.py run them on the CPU).

__device__ __forceinline__ float root(float v) { return sqrtf(v); }
__device__ __forceinline__ double root(double v) { return sqrt(v); }

template <typename T>
__device__ __forceinline__ T mean_joint_distance(const T* __restrict__ a, const T* __restrict__ b, int J)
{
    T s = 0;
    for (int j = 0; j < 3 * J; j += 3) {
        const T dx = a[j] - b[j], dy = a[j + 1] - b[j + 1], dz = a[j + 2] - b[j + 2];
        s += root(dx * dx + dy * dy + dz * dz);
    }
    return s / (T)J;
}

// out (B, C) = scale * MPJPE(a_b, b_c); a (B, J, 3), b (C, J, 3).
template <typename T>
__global__ void pairwise_mpjpe(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                               int B, int C, int J, T scale)
{
    const long long total = (long long)B * C;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long row = e / C;
        const int c = (int)(e - row * C);
        out[e] = scale * mean_joint_distance(a + row * 3 * J, b + (long long)c * 3 * J, J);
    }
}

// Stage 1. Grid (blocks_x, rows_y); P = gridDim.x * blockDim.x slots per row. Slot s of row b
// scans candidates s, s + P, s + 2P, ... and writes its best (value, index, margin) to
// part_*[b * P + s]; index -1 when it had no candidate.
template <typename T>
__global__ void most_violated_partial(const T* __restrict__ scores, const T* __restrict__ y, const T* __restrict__ cand,
                                      int B, int C, int J, T scale,
                                      T* __restrict__ part_value, long long* __restrict__ part_index,
                                      T* __restrict__ part_margin)
{
    const int P = gridDim.x * blockDim.x;
    const int slot = blockIdx.x * blockDim.x + threadIdx.x;
    for (int row = blockIdx.y; row < B; row += gridDim.y) {
        const T* yb = y + (long long)row * 3 * J;
        long long best_i = -1;
        T best_v = 0, best_m = 0;
        for (int c = slot; c < C; c += P) {
            const T m = scale * mean_joint_distance(yb, cand + (long long)c * 3 * J, J);
            const T v = scores[(long long)row * C + c] + m;
            if (best_i < 0 || v > best_v) { best_v = v; best_i = c; best_m = m; }
        }
        const long long o = (long long)row * P + slot;
        part_value[o] = best_v;
        part_index[o] = best_i;
        part_margin[o] = best_m;
    }
}

// Stage 2: one thread per row reduces its P partial results (ties: the lower candidate index).
template <typename T>
__global__ void most_violated_reduce(const T* __restrict__ part_value, const long long* __restrict__ part_index,
                                     const T* __restrict__ part_margin, int B, int P,
                                     long long* __restrict__ index, T* __restrict__ margin, T* __restrict__ value)
{
    for (int row = blockIdx.x * blockDim.x + threadIdx.x; row < B; row += blockDim.x * gridDim.x) {
        long long best_i = -1;
        T best_v = 0, best_m = 0;
        for (int s = 0; s < P; ++s) {
            const long long o = (long long)row * P + s;
            const long long i = part_index[o];
            if (i < 0) continue;
            const T v = part_value[o];
            if (best_i < 0 || v > best_v || (v == best_v && i < best_i)) { best_v = v; best_i = i; best_m = part_margin[o]; }
        }
        index[row] = best_i;
        margin[row] = best_m;
        value[row] = best_v;
    }
}
