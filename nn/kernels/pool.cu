// k x k max-pooling of HWNC arrays (nn/pool.py), the same rules as the NumPy path: trailing rows
// and columns that do not fill a window are dropped; the first maximum in row-major window order
// is the argmax (uint8, 0..k*k-1) and alone receives the gradient. NC = N * C (the two fastest axes).

template <typename T>
__global__ void maxpool_forward(const T* __restrict__ x, T* __restrict__ y, unsigned char* __restrict__ idx,
                                int H, int W, int NC, int k, int out_h, int out_w)
{
    const long long total = (long long)out_h * out_w * NC;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int nc = (int)(e % NC);
        const long long t = e / NC;
        const int j = (int)(t % out_w), i = (int)(t / out_w);
        const long long base = ((long long)i * k * W + (long long)j * k) * NC + nc;
        T best = x[base];
        int arg = 0;
        for (int a = 0; a < k; ++a)
            for (int b = 0; b < k; ++b) {
                const T v = x[base + ((long long)a * W + b) * NC];
                if (v > best) { best = v; arg = a * k + b; }
            }
        y[e] = best;
        idx[e] = (unsigned char)arg;
    }
}

// One thread per input element: its gradient is gy of its window if it was the argmax, else 0.
template <typename T>
__global__ void maxpool_backward(const T* __restrict__ gy, const unsigned char* __restrict__ idx, T* __restrict__ gx,
                                 int H, int W, int NC, int k, int out_h, int out_w)
{
    const long long total = (long long)H * W * NC;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int nc = (int)(e % NC);
        const long long t = e / NC;
        const int xx = (int)(t % W), yy = (int)(t / W);
        const int i = yy / k, j = xx / k;
        T g = 0;
        if (i < out_h && j < out_w) {
            const long long o = ((long long)i * out_w + j) * NC + nc;
            if (idx[o] == (yy - i * k) * k + (xx - j * k)) g = gy[o];
        }
        gx[e] = g;
    }
}
