#include "textflag.h"

// func sgdMomentumAVX2(params, grads, buf []float32, mu, eta float32)
//
// For i < len(grads) &^ 7, eight lanes at a time:
//	b := flush(mu*buf[i] + g[i]); buf[i] = b; params[i] -= eta*b
// with every product rounded before it is added or subtracted (no FMA)
// and flush setting values with a zero exponent field to +0, exactly as
// the scalar loop in optim.go.
TEXT ·sgdMomentumAVX2(SB), NOSPLIT, $0-80
	MOVQ params_base+0(FP), DI
	MOVQ grads_base+24(FP), SI
	MOVQ grads_len+32(FP), CX
	MOVQ buf_base+48(FP), DX
	VBROADCASTSS mu+72(FP), Y0
	VBROADCASTSS eta+76(FP), Y1
	MOVQ $0x7f800000, AX
	MOVQ AX, X2
	VPBROADCASTD X2, Y2
	VPXOR Y3, Y3, Y3
	SHRQ $3, CX
	JZ done

loop:
	VMOVUPS (DX), Y4
	VMULPS Y0, Y4, Y4
	VADDPS (SI), Y4, Y4
	VPAND Y2, Y4, Y5
	VPCMPEQD Y3, Y5, Y5
	VPANDN Y4, Y5, Y4
	VMOVUPS Y4, (DX)
	VMULPS Y1, Y4, Y4
	VMOVUPS (DI), Y6
	VSUBPS Y4, Y6, Y6
	VMOVUPS Y6, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET
