//go:build !amd64

package data

// pixels converts src into dst (as long as src).
func pixels(dst []float32, src []byte) {
	dst = dst[:len(src)]
	for j, p := range src {
		dst[j] = pixelValue[p]
	}
}
