package data

import "golang.org/x/sys/cpu"

// hasAVX2 selects the vector pixel conversion: eight bytes widened to
// int32, converted to float32 (exact) and multiplied by float32(1/255)
// per lane, the same rounded product as pixelValue's, so the bits do not
// depend on it (TestPixelsVectorMatchesTable).
var hasAVX2 = cpu.X86.HasAVX2

// pixelsAVX2 sets dst[i] = float32(src[i]) * float32(1/255) for
// i < len(src) &^ 7; dst must be at least as long.
//
//go:noescape
func pixelsAVX2(dst []float32, src []byte)

// pixels converts src into dst (as long as src).
func pixels(dst []float32, src []byte) {
	dst = dst[:len(src)]
	n := 0
	if hasAVX2 {
		pixelsAVX2(dst, src)
		n = len(src) &^ 7
	}
	for j, p := range src[n:] {
		dst[n+j] = pixelValue[p]
	}
}
