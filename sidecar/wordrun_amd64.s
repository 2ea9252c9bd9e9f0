//go:build amd64 && !purego

#include "textflag.h"

// func wordRunAsm(b *byte, nb int, i int, places *place, np int, row *float64, nrow int, k int, pre *byte, p10 *float64) (int, int)
//
// wordRunGo (decode_json.go), step for step; the comments name its values. Registers
// for the whole loop: SI b, DI places, R10 row, AX i, BX k; for a member: DX its
// place, then its column; R13 npre, then x, then lead; R14 j; R8 end; R9 dot; R11 neg;
// R12 lo, then e; R15 y; CX scratch; X2 16 ','s and X3 16 '.'s, X0 and X1 scratch.
// The bounds (nb, np, nrow) and pre, p10 are read from the arguments where they are
// compared or used. It touches no global symbol (so R15 is free under -dynlink too),
// and uses SSE2 alone, which every amd64 processor has.
TEXT ·wordRunAsm(SB), NOSPLIT, $0-96
	MOVQ b+0(FP), SI
	MOVQ i+16(FP), AX
	MOVQ places+24(FP), DI
	MOVQ row+40(FP), R10
	MOVQ k+56(FP), BX
	MOVQ $0x2c2c2c2c2c2c2c2c, CX
	MOVQ CX, X2
	PUNPCKLQDQ X2, X2
	MOVQ $0x2e2e2e2e2e2e2e2e, CX
	MOVQ CX, X3
	PUNPCKLQDQ X3, X3

loop:
	// pl := &places[k] (40 bytes a place); n := pl.npre; j := i + n
	LEAQ (BX)(BX*4), DX
	LEAQ (DI)(DX*8), DX
	MOVL 8(DX), R13
	LEAQ (AX)(R13*1), R14
	LEAQ 8(R14), CX
	CMPQ CX, nb+8(FP)
	JGT  done                         // j+8 > len(b)
	MOVQ (SI)(AX*1), CX               // c
	CMPQ R13, $8
	JGE  name8
	ANDQ 24(DX), CX                   // c & w[1] != w[0]
	CMPQ CX, 16(DX)
	JNE  done
	JMP  value

name8:
	CMPQ CX, 16(DX)                   // c != w[0]
	JNE  done
	MOVQ -8(SI)(R14*1), CX            // the last word != w[2]
	CMPQ CX, 32(DX)
	JNE  done
	CMPQ R13, $16
	JLE  value
	MOVQ 8(SI)(AX*1), CX              // the second word != w[1]
	CMPQ CX, 24(DX)
	JNE  done
	CMPQ R13, $24
	JLE  value
	// More than 24 bytes: the words between, against pre[pl.pre+o:], o = 16, 24, ...
	// while o < n-8.
	MOVL 4(DX), R9
	ADDQ pre+64(FP), R9
	MOVQ $16, CX
	LEAQ -8(R13), R12

middle:
	LEAQ (AX)(CX*1), R15
	MOVQ (SI)(R15*1), R15
	CMPQ R15, (R9)(CX*1)
	JNE  done
	ADDQ $8, CX
	CMPQ CX, R12
	JLT  middle

value:
	MOVLQSX (DX), DX                  // pl.col
	MOVQ (SI)(R14*1), R13             // x

	// end: the first ',' of x; none, or at 0: not ours. dot: the first '.', 8 when
	// there is none. (x in X1, its 8 bytes compared at once with X2's ','s and X3's
	// '.'s; the upper 8 bytes, 0, are neither.)
	MOVQ R13, X1
	MOVO X1, X0
	PCMPEQB X2, X0
	PMOVMSKB X0, R8
	PCMPEQB X3, X1
	PMOVMSKB X1, R9
	BSFQ R8, R8
	JEQ  done
	TESTQ R8, R8
	JEQ  done
	ORQ  $0x100, R9
	BSFQ R9, R9

	// neg: 1 when x starts with '-'.
	XORL R11, R11
	CMPB R13, $0x2d
	SETEQ R11

	// y: the number's bytes at the word's top (sh = 64-8*end), '0's below them, its
	// '-' made a '0'.
	LEAQ (R8*8), CX
	MOVQ $0x3030303030303030, R12
	SHRQ CX, R12
	NEGQ CX
	ADDQ $64, CX
	MOVQ R13, R15
	SHLQ CX, R15
	ORQ  R12, R15
	LEAQ (R11)(R11*2), R12
	SHLQ CX, R12
	ADDQ R12, R15

	// A '.' before end: lo the bytes below it (at = 8*dot+sh), and y without it.
	LEAQ (R9*8), R12
	ADDQ R12, CX
	MOVQ $1, R12
	SHLQ CX, R12
	DECQ R12
	MOVQ R12, R13
	SHLQ $8, R13
	ORQ  $0xff, R13
	NOTQ R13
	ANDQ R15, R13
	ANDQ R15, R12
	SHLQ $8, R12
	ORQ  R12, R13
	ORQ  $0x30, R13
	// "37.": a '.' without a digit after it.
	LEAQ -1(R8), CX
	CMPQ R9, CX
	JEQ  fail
	// e = end-dot-1 and lead = dot with a '.', else 0 and end.
	MOVQ R8, R12
	SUBQ R9, R12
	DECQ R12
	XORL CX, CX
	CMPQ R9, R8
	CMOVQLT R13, R15
	CMOVQGE CX, R12
	MOVQ R8, R13
	CMOVQLT R9, R13

	// All eight bytes of y digits (EightDigits), a digit before the '.', no
	// leading zero.
	MOVQ $0x4646464646464646, CX
	ADDQ R15, CX
	MOVQ $0xcfcfcfcfcfcfcfd0, R9
	ADDQ R15, R9
	ORQ  R9, CX
	MOVQ $0x8080808080808080, R9
	TESTQ R9, CX
	JNE  fail
	CMPQ R13, R11
	JLE  fail
	LEAQ (SI)(R14*1), CX
	MOVBLZX (CX)(R11*1), CX
	CMPB CX, $0x30
	JNE  digits
	LEAQ 1(R11), CX
	CMPQ R13, CX
	JGT  fail

digits:
	// w = EightDigitsValue(y)
	MOVQ $0xcfcfcfcfcfcfcfd0, CX
	ADDQ CX, R15
	LEAQ (R15)(R15*4), CX
	ADDQ CX, CX
	SHRQ $8, R15
	ADDQ R15, CX
	MOVQ $0x000000ff000000ff, R9
	MOVQ CX, R15
	ANDQ R9, R15
	MOVQ $0x000f424000000064, R13
	IMULQ R13, R15
	SHRQ $16, CX
	ANDQ R9, CX
	MOVQ $0x0000271000000001, R13
	IMULQ R13, CX
	ADDQ R15, CX
	SHRQ $32, CX
	// w / 10^e, then the sign bit: both exact as wordRunGo's ×(±1).
	XORPS X0, X0
	CVTSQ2SD CX, X0
	MOVQ p10+72(FP), R9
	DIVSD (R9)(R12*8), X0
	MOVQ X0, CX
	SHLQ $63, R11
	ORQ  R11, CX

store:
	CMPQ DX, nrow+48(FP)
	JAE  done
	MOVQ CX, (R10)(DX*8)
	INCQ BX
	LEAQ (R14)(R8*1), AX              // i = j + end: the ','
	CMPQ BX, np+32(FP)
	JEQ  done
	LEAQ 2(AX), CX
	CMPQ CX, nb+8(FP)
	JGE  done
	// The next member's '"' after the ',', or after ", ".
	MOVBLZX 1(SI)(AX*1), CX
	CMPB CX, $0x22
	JNE  space
	INCQ AX
	JMP  loop

space:
	CMPB CX, $0x20
	JNE  done
	CMPB 2(SI)(AX*1), $0x22
	JNE  done
	ADDQ $2, AX
	JMP  loop

fail:
	// null, 4 bytes before the ',': NaN (math.NaN's bits).
	CMPQ R8, $4
	JNE  done
	MOVL (SI)(R14*1), CX
	CMPL CX, $0x6c6c756e
	JNE  done
	MOVQ $0x7ff8000000000001, CX
	JMP  store

done:
	MOVQ AX, ret+80(FP)
	MOVQ BX, ret1+88(FP)
	RET
