package cuda

// kernelSource is compiled with NVRTC when an engine opens, for the
// device's own architecture. Every kernel takes its sizes as 64-bit
// integers and bounds-checks them: a launch rounds up to whole blocks.
// Scalar arguments are passed in 8-byte slots (gorgonia.org/cu copies 8
// bytes per argument), so floats sit in the low half of theirs.
const kernelSource = `
typedef long long i64;

extern "C" __global__ void add_row_vector(float* y, const float* v, i64 rows, i64 cols) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < rows * cols) y[i] += v[i % cols];
}

// One thread per column; consecutive threads read consecutive addresses.
extern "C" __global__ void sum_rows(float* dst, const float* x, i64 rows, i64 cols) {
	i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= cols) return;
	float s = 0.0f;
	for (i64 r = 0; r < rows; r++) s += x[r * cols + c];
	dst[c] = s;
}

extern "C" __global__ void add(float* dst, const float* a, const float* b, i64 n) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) dst[i] = a[i] + b[i];
}

extern "C" __global__ void tanh_fwd(float* y, const float* x, i64 n) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) y[i] = tanhf(x[i]);
}

// __fmul_rn keeps 1 − y² from being fused into an FMA, as on the CPU.
extern "C" __global__ void tanh_grad(float* dx, const float* dy, const float* y, i64 n) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) dx[i] = dy[i] * (1.0f - __fmul_rn(y[i], y[i]));
}

extern "C" __global__ void relu(float* y, i64 n) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n && !(y[i] > 0.0f)) y[i] = 0.0f;
}

extern "C" __global__ void relu_grad(float* dy, const float* y, i64 n) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n && !(y[i] > 0.0f)) dy[i] = 0.0f;
}

// One block of 256 threads per row: a max and a sum reduction in shared
// memory, then the loss and the gradient of the mean loss.
extern "C" __global__ void softmax_xent(float* dlogits, float* loss, const float* logits, const float* labels, i64 rows, i64 cols) {
	__shared__ float red[256];
	i64 r = blockIdx.x;
	if (r >= rows) return;
	const float* z = logits + r * cols;
	float* d = dlogits + r * cols;
	int t = threadIdx.x;
	float m = -__int_as_float(0x7f800000); // −∞ without math.h, which NVRTC lacks
	for (i64 c = t; c < cols; c += blockDim.x) m = fmaxf(m, z[c]);
	red[t] = m;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if (t < s) red[t] = fmaxf(red[t], red[t + s]);
		__syncthreads();
	}
	m = red[0];
	__syncthreads();
	float sum = 0.0f;
	for (i64 c = t; c < cols; c += blockDim.x) sum += expf(z[c] - m);
	red[t] = sum;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if (t < s) red[t] += red[t + s];
		__syncthreads();
	}
	sum = red[0];
	i64 y = (i64)labels[r];
	float inv = 1.0f / (float)rows;
	for (i64 c = t; c < cols; c += blockDim.x) {
		float p = expf(z[c] - m) / sum;
		d[c] = (p - (c == y ? 1.0f : 0.0f)) * inv;
	}
	if (t == 0) loss[r] = logf(sum) - (z[y] - m);
}

// One thread per element of cols ([C·K·K, N·OH·OW]).
extern "C" __global__ void im2col(float* cols, const float* x, i64 N, i64 C, i64 H, i64 W, i64 K, i64 P, i64 OH, i64 OW) {
	i64 nhw = N * OH * OW;
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= C * K * K * nhw) return;
	i64 row = i / nhw, col = i % nhw;
	i64 c = row / (K * K), ki = (row / K) % K, kj = row % K;
	i64 n = col / (OH * OW), oy = (col / OW) % OH, ox = col % OW;
	i64 iy = oy + ki - P, ix = ox + kj - P;
	cols[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[((n * C + c) * H + iy) * W + ix] : 0.0f;
}

// One thread per element of dx: a gather over the kernel offsets, in a
// fixed order, so the sums are deterministic (no atomics).
extern "C" __global__ void col2im(float* dx, const float* cols, i64 N, i64 C, i64 H, i64 W, i64 K, i64 P, i64 OH, i64 OW) {
	i64 nhw = N * OH * OW;
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= N * C * H * W) return;
	i64 n = i / (C * H * W), c = (i / (H * W)) % C, iy = (i / W) % H, ix = i % W;
	float s = 0.0f;
	for (i64 ki = 0; ki < K; ki++) {
		i64 oy = iy - ki + P;
		if (oy < 0 || oy >= OH) continue;
		for (i64 kj = 0; kj < K; kj++) {
			i64 ox = ix - kj + P;
			if (ox < 0 || ox >= OW) continue;
			s += cols[((c * K + ki) * K + kj) * nhw + (n * OH + oy) * OW + ox];
		}
	}
	dx[i] = s;
}

extern "C" __global__ void from_cnp(float* y, const float* t, const float* bias, i64 N, i64 C, i64 HW) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= N * C * HW) return;
	i64 n = i / (C * HW), c = (i / HW) % C, p = i % HW;
	y[i] = t[(c * N + n) * HW + p] + bias[c];
}

extern "C" __global__ void to_cnp(float* t, const float* y, i64 N, i64 C, i64 HW) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= N * C * HW) return;
	i64 c = i / (N * HW), n = (i / HW) % N, p = i % HW;
	t[i] = y[(n * C + c) * HW + p];
}

// The first maximum of the 2×2 window at base, in the CPU's order.
__device__ i64 pool_argmax(const float* x, i64 base, i64 W) {
	i64 at = base;
	float v = x[base];
	if (x[base + 1] > v) { at = base + 1; v = x[at]; }
	if (x[base + W] > v) { at = base + W; v = x[at]; }
	if (x[base + W + 1] > v) { at = base + W + 1; }
	return at;
}

extern "C" __global__ void relu_pool(float* y, const float* x, i64 planes, i64 H, i64 W) {
	i64 OH = H / 2, OW = W / 2;
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= planes * OH * OW) return;
	i64 p = i / (OH * OW), oy = (i / OW) % OH, ox = i % OW;
	float v = x[pool_argmax(x, p * H * W + 2 * oy * W + 2 * ox, W)];
	y[i] = v > 0.0f ? v : 0.0f;
}

// One thread per element of dx: it receives its window's gradient if it is
// the window's first maximum and that maximum is positive.
extern "C" __global__ void relu_pool_grad(float* dx, const float* dy, const float* x, i64 planes, i64 H, i64 W) {
	i64 OH = H / 2, OW = W / 2;
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= planes * H * W) return;
	i64 p = i / (H * W), iy = (i / W) % H, ix = i % W;
	i64 oy = iy / 2, ox = ix / 2;
	i64 at = pool_argmax(x, p * H * W + 2 * oy * W + 2 * ox, W);
	dx[i] = (at == i && x[at] > 0.0f) ? dy[(p * OH + oy) * OW + ox] : 0.0f;
}

extern "C" __global__ void sgd(float* p, const float* g, float* buf, i64 n, float lr, float mu, float wd, i64 nesterov) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n) return;
	float gi = g[i] + wd * p[i];
	float b = mu * buf[i] + gi;
	buf[i] = b;
	if (nesterov) b = gi + mu * b;
	p[i] -= lr * b;
}

extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, i64 n,
		float b1, float b2, float eps, float decay, float step, float sqrtbc2) {
	i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n) return;
	float gi = g[i];
	float mi = b1 * m[i] + (1.0f - b1) * gi;
	float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
	m[i] = mi;
	v[i] = vi;
	p[i] = p[i] * decay - step * (mi / (sqrtf(vi) / sqrtbc2 + eps));
}
`

// kernelNames are the kernels Open loads.
var kernelNames = []string{"add_row_vector", "sum_rows", "add", "tanh_fwd", "tanh_grad", "relu", "relu_grad", "softmax_xent", "sgd", "adamw",
	"im2col", "col2im", "from_cnp", "to_cnp", "relu_pool", "relu_pool_grad"}
