# SPDX-License-Identifier: GPL-2.0-or-later
#
# Boot sector of the guest that scripts/check-libvirt.py migrates: it
# checks its own memory while it keeps changing it, so a destination that
# resumes it with a page missing, stale or wrong stops it with an error.
#
# 64 MiB from 1 MiB up, 16384 pages of 4 KiB.  Every page holds its own
# address in its first word and a counter in its second and last words.
# The guest makes passes over all pages, checking each one, and after each
# pass increments the counters of the next W pages (round robin).  So after
# s = W * passes page writes, page i holds q + (i < r), with q = s / PAGES
# and r = s % PAGES: the guest knows what every page must hold.  Under KVM
# a pass takes about 60 ms on this project's machines, so the guest
# dirties about 17 MiB a second: enough that a postcopy switch after the
# first precopy pass (at 32 MiB/s) finds pages left to send, few enough
# for precopy to converge over loopback.
#
# Serial output: 'A' once the memory is filled, then 'B' after every 8
# passes; 'E' (and a halt) if a page does not hold what it must.
#
# Built by meson.build: assembled for i486, linked at 0x7c00, flat binary.

#define MEM_START   (1 << 20)
#define PAGES       16384               /* 64 MiB of 4 KiB pages */
#define PAGE_SHIFT  14                  /* log2(PAGES) */
#define W           256                 /* pages written per pass */
#define SERIAL      0x3f8

#include "bootblock.h"

        bootblock_enter_pmode

        mov     $MEM_START, %edi
fill:
        mov     %edi, (%edi)
        movl    $0, 4(%edi)
        movl    $0, 4092(%edi)
        add     $4096, %edi
        cmp     $(MEM_START + PAGES * 4096), %edi
        jb      fill
        mov     $SERIAL, %dx
        mov     $'A', %al
        outb    %al, %dx

        # %ebp: s, the page writes so far; %bl: passes, mod 8
        xor     %ebp, %ebp
        xor     %ebx, %ebx
pass:
        mov     %ebp, %esi
        and     $(PAGES - 1), %esi      # r
        shl     $12, %esi
        add     $MEM_START, %esi        # address of page r
        mov     %ebp, %eax
        shr     $PAGE_SHIFT, %eax       # q
        lea     1(%eax), %ecx           # q + 1: pages below r
        mov     $MEM_START, %edi
check:
        cmp     %esi, %edi
        jne     1f
        mov     %eax, %ecx              # from page r on: q
1:
        cmp     (%edi), %edi
        jne     bad
        cmp     4(%edi), %ecx
        jne     bad
        cmp     4092(%edi), %ecx
        jne     bad
        add     $4096, %edi
        cmp     $(MEM_START + PAGES * 4096), %edi
        jb      check

        # pages r .. r + W - 1 now hold q; they become q + 1
        inc     %eax
        mov     $W, %ecx
write:
        mov     %eax, 4(%esi)
        mov     %eax, 4092(%esi)
        add     $4096, %esi
        loop    write
        add     $W, %ebp

        inc     %bl
        and     $7, %bl
        jnz     pass
        mov     $SERIAL, %dx
        mov     $'B', %al
        outb    %al, %dx
        jmp     pass

bad:
        mov     $SERIAL, %dx
        mov     $'E', %al
        outb    %al, %dx
halt:
        hlt
        jmp     halt

        bootblock_gdt_and_signature
