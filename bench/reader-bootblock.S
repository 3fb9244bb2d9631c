# SPDX-License-Identifier: GPL-2.0-or-later
#
# Boot sector of the guest that scripts/postcopy-bench.py migrates: it
# fills 64 MiB (from 1 MiB up) with known data, then reads every page of it
# once per pass, in the same pseudo-random order on every pass, checking
# what it reads.  So a postcopy of it faults on every page that has not yet
# arrived in the same order every time, from its one vCPU, which is what
# makes the blocktime of one run comparable with another's.
#
# Serial output: 'A' once the memory is filled, then 'B' after every 64
# passes; 'E' (and a halt) if a page does not hold what was written to it.
#
# Built by meson.build: assembled for i486, linked at 0x7c00, flat binary.

#define MEM_START   (1 << 20)
#define PAGES       16384               /* 64 MiB of 4 KiB pages */
#define SERIAL      0x3f8

#include "bootblock.h"

        bootblock_enter_pmode
        mov     $SERIAL, %dx

        # Every page holds its own address, first and last word
        mov     $MEM_START, %edi
fill:
        mov     %edi, (%edi)
        mov     %edi, 4092(%edi)
        add     $4096, %edi
        cmp     $(MEM_START + PAGES * 4096), %edi
        jb      fill
        mov     $'A', %al
        outb    %al, %dx

        # %ecx: page index, x = (1103515245 x + 12345) mod PAGES, whose
        # period is PAGES (multiplier 1 mod 4, odd increment): every pass
        # reads every page once.  %bl counts passes.
        xor     %ecx, %ecx
        xor     %ebx, %ebx
pass:
        mov     $PAGES, %esi
read:
        imul    $1103515245, %ecx, %ecx
        add     $12345, %ecx
        and     $(PAGES - 1), %ecx
        mov     %ecx, %edi
        shl     $12, %edi
        add     $MEM_START, %edi
        cmp     (%edi), %edi
        jne     bad
        cmp     4092(%edi), %edi
        jne     bad
        dec     %esi
        jnz     read
        inc     %bl
        and     $63, %bl
        jnz     pass
        mov     $'B', %al
        outb    %al, %dx
        jmp     pass

bad:
        mov     $'E', %al
        outb    %al, %dx
halt:
        hlt
        jmp     halt

        bootblock_gdt_and_signature
