#include "textflag.h"

// func pixelsAVX2(dst []float32, src []byte)
//
// For i < len(src) &^ 7, eight lanes at a time:
//	dst[i] = float32(int32(src[i])) * float32(1/255)
// (0x3b808081 is float32(1/255), the constant pixelValue multiplies by).
TEXT ·pixelsAVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	MOVL $0x3b808081, AX
	MOVQ AX, X0
	VPBROADCASTD X0, Y0
	SHRQ $3, CX
	JZ done

loop:
	VPMOVZXBD (SI), Y1
	VCVTDQ2PS Y1, Y1
	VMULPS Y0, Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $8, SI
	ADDQ $32, DI
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET
