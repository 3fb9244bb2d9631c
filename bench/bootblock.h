/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What the benchmark's boot sectors share: the switch to flat 32-bit
 * protected mode with A20 on (as QEMU's own migration test guest,
 * tests/qtest/migration/i386/a-b-bootblock.S, makes it), and the GDT and
 * boot signature at the end of the sector.  Included by
 * reader-bootblock.S and writer-bootblock.S.
 */

        .macro  bootblock_enter_pmode
        .code16
        .text
        .globl  start
start:
        cli
        lgdtl   gdtdesc
        mov     $1, %eax
        mov     %eax, %cr0              # protected mode on
        ljmpl   $8, $pmode

        .code32
pmode:
        mov     $16, %eax               # flat data segment
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        inb     $0x92, %al              # A20 on
        or      $2, %al
        outb    %al, $0x92
        .endm

        .macro  bootblock_gdt_and_signature
        .p2align 3
gdt:
        .quad   0
        .quad   0x00cf9a000000ffff      # code: base 0, 4 GiB, 32-bit, r/x
        .quad   0x00cf92000000ffff      # data: base 0, 4 GiB, r/w
gdtdesc:
        .word   gdtdesc - gdt - 1
        .long   gdt

        .org    510
        .byte   0x55, 0xaa
        .endm
