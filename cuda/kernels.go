//go:build vtcuda

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
	float m = -INFINITY;
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
var kernelNames = []string{"add_row_vector", "sum_rows", "relu", "relu_grad", "softmax_xent", "sgd", "adamw"}
