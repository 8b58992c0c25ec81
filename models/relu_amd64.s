#include "textflag.h"

// func reluMulAVX2(dst, x, v []float32)
//
// For i < len(dst) &^ 7, eight lanes at a time:
//	dst[i] = v[i] * (x[i] >= 0 ? 1.0 : 0.0)
// with the comparison ordered and quiet (_CMP_GE_OQ: false for NaN), as
// the scalar loop in dense.go computes it.
TEXT ·reluMulAVX2(SB), NOSPLIT, $0-72
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ x_base+24(FP), SI
	MOVQ v_base+48(FP), DX
	MOVQ $0x3f800000, AX
	MOVQ AX, X1
	VPBROADCASTD X1, Y1
	VXORPS Y0, Y0, Y0
	SHRQ $3, CX
	JZ done

loop:
	VMOVUPS (SI), Y2
	VCMPPS $0x1d, Y0, Y2, Y3
	VANDPS Y1, Y3, Y3
	VMOVUPS (DX), Y4
	VMULPS Y3, Y4, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET
