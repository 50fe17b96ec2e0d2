// im2col / col2im for HWNC arrays (nn/conv.py), zero padding folded in: no padded copy is made.
//
// x (H, W, N, C); col rows are the output positions (i, j, n) of output rows [row0, row0 + rows),
// its columns the patch entries (p, q, c): col has shape (rows * out_w * N, kh * kw * C), the
// order of Conv2D._weight_matrix. One thread per written element, grid-stride loops, no atomics:
// col2im gathers, for each input element, the patch entries that read it, so the sum is
// deterministic. Each thread writes only its own element (no shared memory), which also lets
// nn/kernels/emulate.py run these kernels on the CPU.

template <typename T>
__global__ void im2col_hwnc(const T* __restrict__ x, T* __restrict__ col,
                            int H, int W, int N, int C, int kh, int kw, int sy, int sx, int ph, int pw,
                            int out_w, int row0, int rows)
{
    const long long K = (long long)kh * kw * C;
    const long long total = (long long)rows * out_w * N * K;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long r = e / K;
        const int k = (int)(e - r * K);
        const int c = k % C, q = (k / C) % kw, p = k / (C * kw);
        const int n = (int)(r % N);
        const long long t = r / N;
        const int j = (int)(t % out_w), i = (int)(t / out_w) + row0;
        const int yy = i * sy + p - ph, xx = j * sx + q - pw;
        col[e] = (yy >= 0 && yy < H && xx >= 0 && xx < W)
                     ? x[(((long long)yy * W + xx) * N + n) * C + c] : (T)0;
    }
}

// gx += col2im(gcol) for the output rows [row0, row0 + rows); gx (H, W, N, C) unpadded.
template <typename T>
__global__ void col2im_hwnc(const T* __restrict__ gcol, T* __restrict__ gx,
                            int H, int W, int N, int C, int kh, int kw, int sy, int sx, int ph, int pw,
                            int out_w, int row0, int rows)
{
    const long long K = (long long)kh * kw * C;
    const long long total = (long long)H * W * N * C;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int c = (int)(e % C);
        const long long t = e / C;
        const int n = (int)(t % N);
        const int xx = (int)((t / N) % W) + pw, yy = (int)(t / ((long long)N * W)) + ph;
        T acc = 0;
        for (int p = 0; p < kh && yy - p >= 0; ++p) {
            const int dy = yy - p;
            if (dy % sy) continue;
            const int i = dy / sy;
            if (i < row0 || i >= row0 + rows) continue;
            for (int q = 0; q < kw && xx - q >= 0; ++q) {
                const int dx = xx - q;
                if (dx % sx) continue;
                const int j = dx / sx;
                if (j >= out_w) continue;
                acc += gcol[(((long long)(i - row0) * out_w + j) * N + n) * K + ((long long)p * kw + q) * C + c];
            }
        }
        gx[e] += acc;
    }
}
