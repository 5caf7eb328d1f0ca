"""The crash vocabulary, as data (the facts of syzkaller's ``pkg/report/linux.go``).

A report starts at a line holding one :class:`Group`'s ``word`` (``BUG:``, ``WARNING:``, ...)
that none of its ``suppress`` patterns matches. The group's :class:`CrashFormat` rows are tried
in order; the first whose ``header`` matches there (and whose multi-line ``report`` pattern, if
any, matches the report) titles it. A title is ``fmt`` filled with the patterns' groups and then
the guilty frames, found by the row's :class:`StackRule`: its ``parts`` are matched one after
the other down the report, :data:`STACK` reading a call trace there, and the first frame that
no skip pattern matches (or the one a ``extractor`` picks) is the guilty one. Adding a crash
class is adding a row; order matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Placeholders of the patterns below, expanded by _re().
_PLACEHOLDERS = {
    "{{PC}}": r"\[\<?(?:0x)?[0-9a-f]+\>?\]",
    "{{FUNC}}": r"([a-zA-Z0-9_]+)(?:\.|\+)",
    "{{SRC}}": r"([a-zA-Z0-9_/.-]+\.[a-z]+:[0-9]+)",
    "{{TASK}}": r"[\s\S]{0,100}?",
}


def _re(pattern: str) -> re.Pattern[str]:
    for placeholder, expansion in _PLACEHOLDERS.items():
        pattern = pattern.replace(placeholder, expansion)
    return re.compile(pattern)


class _Stack:
    """The part of a stack rule that reads a call trace from where the previous part stopped."""

    def __repr__(self) -> str:
        return "STACK"


STACK = _Stack()
Part = re.Pattern[str] | _Stack


@dataclass(frozen=True)
class StackRule:
    parts: tuple[Part, ...]
    fallbacks: tuple[tuple[Part, ...], ...] = ()  # tried in turn while no frame is found
    skip: tuple[str, ...] = ()  # more helper frames for this row (regex, searched in the name)
    extractor: str | None = None  # "stall" or "hang": a representative frame deeper down


@dataclass(frozen=True)
class CrashFormat:
    kind: str
    header: re.Pattern[str]
    fmt: str  # str.format over the patterns' groups, then the guilty frames
    report: re.Pattern[str] | None = None  # must also match the report, from the header on
    stack: StackRule | None = None
    no_stack: bool = False  # a report of this kind has no call trace
    corrupted: bool = False  # a header that only a garbled report leaves
    panicked: bool = False


@dataclass(frozen=True)
class Group:
    word: str
    formats: tuple[CrashFormat, ...]
    suppress: tuple[re.Pattern[str], ...] = field(default=())
    after_lead: bool = True  # may follow a HEADER_LEAD ("rcu: "); else a message starts with it


RIP_FRAME = _re(r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{{PC}} +){0,2}{{FUNC}}|"
                r"(?:[0-9]+:)?0x[0-9a-f]+|(?:[0-9]+:)?{{PC}} +\[< *\(null\)>\] +\(null\)|"
                r"[0-9]+: +\(null\))")
CALL_TRACE = _re(r"(?:Call (?:T|t)race:)|(?:Backtrace:)")
# Lines that start a stack trace, and so end the one being read.
STACK_START = _re("|".join((
    r"Call (?:T|t)race", r"Allocated:", r"Allocated by task [0-9]+:", r"Freed:",
    r"Freed by task [0-9]+:", r"[^k] backtrace(?: \(crc [0-9a-fA-F]*\))?:", r"Backtrace:",
    r"Uninit was stored to memory at",
)))
# A frame line: "func+0x1/0x2", maybe after one or two "[<addr>]"; arm's "(f) from [<pc>] (g".
FRAME_LINE = re.compile(_re(r"^ *(?:(?:{{PC}} ){0,2}{{FUNC}}|"
                            r"{{PC}} \(([a-zA-Z0-9_.]+)\) from {{PC}} \({{FUNC}})").pattern,
                        re.MULTILINE)
# Frames that never name a crash: reporting, sanitizer, locking, allocation, string and
# device-model helpers. Searched in the function name.
SKIP_FRAMES = (
    "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
    "check_memory_region", "check_heap_object", "check_object", "read_word_at_a_time",
    "(read|write)_once_.*nocheck", "print_address_description", "panic", "invalid_op",
    "report_bug", "fixup_bug", "print_report", "print_usage_bug", "do_error", "_trap$|do_trap",
    "show_stack", "dump_stack", "walk_stack", "dump_backtrace", "warn_slowpath", "warn_alloc",
    "warn_bogus", "__warn", "alloc_page", "k?v?(?:m|z|c)alloc", "krealloc", "kmem_cache",
    "allocate_slab", "__alloc_frozen_pages_noprof", "folio_(?:alloc|unlock)",
    "filemap_alloc_folio", "__filemap_get_folio", "find_or_create_page", "do_read_cache_folio",
    "read_cache_page", "pagecache_get_page", "grab_cache_page_write_begin", "slab_",
    "debug_object", "timer_is_static_object", "work_is_static_object", "__might_fault",
    "print_unlock", "imbalance_bug", "lockdep", "bh_enable", "bh_disable", "perf_trace",
    "lock_acquire", "lock_release", "lock_class", "mark_lock", "(reacquire|mark)_held_locks",
    "raw_spin_rq", "spin_lock", "spin_trylock", "spin_unlock", "read_lock", "read_trylock",
    "write_lock", "write_trylock", "read_unlock", "write_unlock", "^down$", "down_read",
    "down_write", "down_trylock", "up_read", "up_write", "^mutex_", "^__mutex_", "^rt_mutex_",
    "owner_on_cpu", "osq_lock", "osq_unlock",
    "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
    "(set|clear|change|test)_bit", "__wake_up", "^refcount_", "^kref_", "ref_tracker",
    "seqprop_assert", "memcpy", "memcmp", "memset", "memchr", "memmove", "memdup", "strcmp",
    "strncmp", "strcpy", "strlcpy", "strncpy", "strscpy", "strlen", "strstr", "strnstr",
    "strnlen", "strchr", "strdup", "strndup", "copy_to_user", "copy_from_user", "copy_to_iter",
    "copy_from_iter", "copy_page_to_iter", "copy_page_from_iter", "copy_folio_to_iter",
    "^copyin$", "^copyout$", "put_user", "get_user", "might_fault", "might_sleep", "list_add",
    "list_del", "list_replace", "list_move", "list_splice", "^rb_", "^__rb_",
    "_indirect_thunk_", "string", "pointer", "snprintf", "scnprintf", "kasprintf",
    "kvasprintf", "printk", "va_format", "dev_info", "dev_notice", "dev_warn", "dev_err",
    "dev_alert", "dev_crit", "dev_emerg", "program_check_exception", "program_check_common",
    "del_timer", "flush_work", "__cancel_work_timer", "cancel_work_sync", "try_to_grab_pending",
    "flush_workqueue", "drain_workqueue", "destroy_workqueue", "queue_work", "finish_wait",
    "kthread_stop", "kobject_", "add_uevent_var", "get_device_parent", "device_add",
    "device_del", "device_unregister", "device_destroy", "device_release", "devres_release_all",
    "hwrng_unregister", "i2c_del_adapter", "__unregister_client", "device_for_each_child",
    "rollback_registered", "unregister_netdev", "sysfs_remove", "device_remove_file",
    "tty_unregister_device", "dummy_urb_enqueue", "usb_kill_urb", "usb_kill_anchored_urbs",
    "usb_control_msg", "usb_hcd_submit_urb", "usb_submit_urb", "^complete$",
    "wait_for_completion", "^kv?free$", "kfree_skb", "readb$", "readw$", "readl$", "readq$",
    "writeb$", "writew$", "writel$", "writeq$", "logic_in", "logic_out", r"^crc\d+",
    "crc_itu_t", "__might_resched", "assertfail", "^iput$", "^iput_final$", "^ihold$",
    "hex_dump_to_buffer", "print_hex_dump", "^klist_", "(trace|lockdep)_(hard|soft)irq",
    "^(un)?lock_page", "stack_trace_consume_entry", "arch_stack_walk", "stack_trace_save",
    "insert_work", "__queue_delayed_work", "queue_delayed_work_on", "ida_free",
    "do_(kernel|translation)_fault", "do_mem_abort", "el1_abort", "el1h_64_sync(?:_handler)?",
    "print_tainted", "xas_(?:start|load|find)", "find_lock_entries",
    "truncate_inode_pages_range", "__phys_addr", "__fortify_report", "cleanup_srcu_struct",
    "rhashtable_lookup", "extract_(user|iter)_to_sg", "drop_nlink", "^get_taint$",
    "^put_device$", "lock_timer_base", "__timer_delete_sync", "sk_stop_timer_sync",
    "__mod_timer", "fast_dput", "dput", "mark_buffer_dirty",
    # Beyond syzkaller's list: the sleeping helpers a module calls where it must not sleep.
    "^msleep", "^ssleep$", "^usleep_range",
)
# A frame from fault injection means another report's stack is mixed into this one.
CORRUPTING_LINE = re.compile(
    r"^( \[\<?(?:0x)?[0-9a-f]+\>?\])? should_fail(slab)?(\.[a-z0-9.]+)?\+0x", re.MULTILINE)
# Syscall entry prefixes, stripped from the guilty frame ("__x64_sys_rmdir" is "sys_rmdir").
STRIP_PREFIXES = (
    "SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_",
    "__se_", "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_",
)
# Where a stall's looping code is entered: the frame before one of these is representative.
STALL_ANCHOR = _re("|".join((
    "process_one_work", "do_syscall_", "do_fast_syscall_", "sysenter_dispatch",
    "tracesys_phase2", "el0_svc_handler", "invoke_syscall", "ret_fast_syscall",
    "netif_receive_skb", "do_softirq", "call_timer_fn", "_run_timers", "run_timer_softirq",
    "hrtimer_run", "run_ksoftirqd", "smpboot_thread_fn", "^kthread$", "start_secondary",
    "cpu_startup_entry", "ret_from_fork", "vfs_write", "vfs_read", "vfs_iter_read",
    "vfs_iter_write", "do_iter_read", "do_iter_write", "call_read_iter", "call_write_iter",
    "new_sync_read", "new_sync_write", "vfs_ioctl", "ksys_ioctl", "compat_ioctl",
    "compat_sys_ioctl", "blkdev_driver_ioctl", "blkdev_ioctl", "do_iter_readv_writev",
    "^call_mmap", "mmap_region", "do_mmap", "do_dentry_open", "vfs_open", "^sock_sendmsg",
    "^sock_recvmsg", "^sock_release", "^__sock_release", "^setsockopt$", "kernel_setsockopt",
    "sock_common_setsockopt", "^listen$", "kernel_listen", "sk_common_release", "^sock_mmap",
    "^accept$", "kernel_accept", "^sock_do_ioctl", "^sock_ioctl", "^compat_sock_ioctl",
    "^nfnetlink_rcv_msg", "^rtnetlink_rcv_msg", "^netlink_dump",
    "^(sys_)?(socketpair|connect|ioctl)", "__do_fault", "do_page_fault", "^page_fault$",
    "__fput", "task_work_run", "exit_to_usermode", "smp_call_function", "tasklet_action",
    "tasklet_hi_action",
    # Beyond syzkaller's list: loading a module, where a module's init loops.
    "^do_one_initcall$",
)))
# A hung task waits on one of these: the hang is grouped under it.
HANG_ANCHORS = {"rtnl_lock": "", "synchronize_rcu": "synchronize_rcu",
                "synchronize_srcu": "synchronize_rcu", "synchronize_net": "synchronize_rcu",
                "synchronize_sched": "synchronize_rcu"}
HANG_SKIP = ("sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait",
             "synchronize", "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier")


def _stack(*parts: Part, skip: tuple[str, ...] = (), extractor: str | None = None,
           fallbacks: tuple[tuple[Part, ...], ...] = ()) -> StackRule:
    return StackRule(parts, fallbacks, skip, extractor)


# Newer kernels trap on WARN: the stack starts at the RIP line; older ones just print it.
WARNING_START = _re(f"(?:{RIP_FRAME.pattern}|--- interrupt: [0-9]+ at {{{{FUNC}}}})")


def _warning_stack(*skip: str) -> StackRule:
    return StackRule((WARNING_START, STACK), ((CALL_TRACE, STACK),), skip)


# Words one of which every match of these patterns holds: the search for them goes first.
_RIP_WORDS = ("IP", "pc ", "PC is at")
LEAD_WORDS: dict[re.Pattern[str], tuple[str, ...]] = {
    STACK_START: ("Call ", "Allocated", "Freed", "acktrace", "Uninit was stored"),
    CALL_TRACE: ("Call Trace:", "Call trace:", "Backtrace:"),
    RIP_FRAME: _RIP_WORDS,
    WARNING_START: (*_RIP_WORDS, "--- interrupt: "),
}
_FAULT = _stack(RIP_FRAME, CALL_TRACE, STACK)
_TRACE = _stack(CALL_TRACE, STACK)
_STALL = "stall"


def _f(kind: str, header: str, fmt: str, *, report: str | None = None,
       stack: StackRule | None = None, no_stack: bool = False, corrupted: bool = False,
       panicked: bool = False) -> CrashFormat:
    return CrashFormat(kind, _re(header), fmt, _re(report) if report else None, stack, no_stack,
                       corrupted, panicked)


_RCU_STALL_PARTS: tuple[Part, ...] = (_re("apic_timer_interrupt"), RIP_FRAME, STACK)
_RCU_STALL_PARTS2: tuple[Part, ...] = (
    _re("(?:apic_timer_interrupt|Exception stack|el1h_64_irq)"), STACK)
_RCU_STALL_SKIP = ("apic_timer_interrupt", "rcu")
_KASAN_BAD_ACCESS = ("BUG: KASAN: ([a-z\\-]+) in {{FUNC}}(?:.*\\n)+?.*(Read|Write) "
                     "(?:of size|at addr) (?:[0-9a-f]+)")
_LOCK_AT = "at: (?:{{PC}} +)?{{FUNC}}"

GROUPS: tuple[Group, ...] = (
    Group("BUG:", (
        _f("KASAN", "BUG: KASAN:", "KASAN: {0} {2} in {3}", report=_KASAN_BAD_ACCESS,
           stack=_stack(_re("BUG: KASAN: (?:[a-z\\-]+) in {{FUNC}}"), CALL_TRACE, STACK,
                        skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"))),
        _f("KASAN", "BUG: KASAN:", "KASAN: invalid-free in {1}",
           report="BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in "
                  "{{FUNC}}",
           stack=_stack(_re("BUG: KASAN: (?:double-free or invalid-free|double-free|"
                            "invalid-free) in {{FUNC}}"), CALL_TRACE, STACK,
                        skip=("slab_", "kfree", "vunmap", "vfree"))),
        _f("KASAN", "BUG: KASAN: ([a-z\\-]+) on address(?:.*\\n)+?.*(Read|Write) of size "
           "([0-9]+)", "KASAN: {0} {1}"),
        _f("KASAN", "BUG: KASAN: (.*)", "KASAN: {0}", corrupted=True),
        _f("KMSAN", "BUG: KMSAN: kernel-usb-infoleak", "KMSAN: kernel-usb-infoleak in {1}",
           report="BUG: KMSAN: kernel-usb-infoleak in {{FUNC}}", no_stack=True,
           stack=_stack(STACK, _re("(Local variable .* created at:|Uninit was created at:)"),
                        STACK, skip=("alloc_skb", "usb_submit_urb", "usb_start_wait_urb",
                                     "usb_bulk_msg", "usb_interrupt_msg", "usb_control_msg"))),
        _f("KMSAN", "BUG: KMSAN:", "KMSAN: {0} in {2}",
           report="BUG: KMSAN: ([a-z\\-]+) in {{FUNC}}", no_stack=True,
           stack=_stack(STACK, _re("(Local variable .* created at:|Uninit was created at:)"),
                        STACK, skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb",
                                     "_encrypt$", "^(?:crypto|cipher|drbg|rng)_"))),
        _f("KCSAN", "BUG: KCSAN:", "KCSAN: {0}", report="BUG: KCSAN: (.*)", no_stack=True),
        _f("KFENCE", "BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in {{FUNC}}",
           "KFENCE: {0} {1} in {3}",
           stack=_stack(_re("BUG: KFENCE: (?:[a-z\\- ]+) in {{FUNC}}"), STACK)),
        _f("KFENCE", "BUG: KFENCE: invalid free in {{FUNC}}", "KFENCE: invalid free in {1}",
           no_stack=True, stack=_stack(_re("BUG: KFENCE: (?:[a-z\\- ]+) in {{FUNC}}"), STACK)),
        _f("KFENCE", "BUG: KFENCE: invalid (read|write) in {{FUNC}}",
           "KFENCE: invalid {0} in {2}",
           stack=_stack(_re("BUG: KFENCE: (?:[a-z\\- ]+) in {{FUNC}}"), STACK)),
        _f("KFENCE", "BUG: KFENCE: memory corruption in {{FUNC}}",
           "KFENCE: memory corruption in {1}", no_stack=True,
           stack=_stack(_re("BUG: KFENCE: (?:[a-z\\- ]+) in {{FUNC}}"), STACK)),
        _f("paging request", "BUG: (?:unable to handle kernel paging request|unable to handle "
           "page fault for address|Unable to handle kernel data access)",
           "BUG: unable to handle kernel paging request in {0}", stack=_FAULT),
        _f("NULL pointer dereference", "BUG: (?:unable to handle kernel NULL pointer "
           "dereference|kernel NULL pointer dereference|Kernel NULL pointer dereference)",
           "BUG: unable to handle kernel NULL pointer dereference in {0}", stack=_FAULT),
        _f("paging request", "BUG: (?:unable to handle kernel|Unable to handle kernel)",
           "BUG: unable to handle kernel", corrupted=True),
        _f("spinlock", "BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion"
           "|cpu recursion|bad magic|wrong owner|wrong CPU|trylock failure on UP)",
           "BUG: {0} {1} in {2}", stack=_stack(CALL_TRACE, STACK,
                                               skip=("spin_", "_lock", "_unlock"))),
        _f("soft lockup", "BUG: soft lockup", "BUG: soft lockup in {0}",
           stack=_stack(RIP_FRAME, CALL_TRACE, STACK, extractor=_STALL)),
        _f("locking bug", "BUG: .*still has locks held!", "BUG: still has locks held in {0}",
           report="BUG: .*still has locks held!(?:.*\\n)+?.*{{PC}} +{{FUNC}}"),
        _f("scheduling while atomic", "BUG: scheduling while atomic",
           "BUG: scheduling while atomic in {0}",
           stack=_stack(CALL_TRACE, STACK, skip=("schedule",))),
        _f("locking bug", "BUG: lock held when returning to user space",
           "BUG: lock held when returning to user space in {0}", no_stack=True,
           report="BUG: lock held when returning to user space(?:.*\\n)+?.*leaving the kernel "
                  "with locks still held(?:.*\\n)+?.*" + _LOCK_AT),
        _f("locking bug", "BUG: bad unlock balance detected!", "BUG: bad unlock balance in {0}",
           stack=_stack(_re("{{PC}} +{{FUNC}}"), CALL_TRACE, STACK)),
        _f("locking bug", "BUG: held lock freed!", "BUG: held lock freed in {0}",
           report="BUG: held lock freed!(?:.*\\n)+?.*{{PC}} +{{FUNC}}"),
        _f("bad rss", "BUG: Bad rss-counter state", "BUG: Bad rss-counter state",
           no_stack=True),
        _f("bad mm", "BUG: non-zero nr_ptes on freeing mm", "BUG: non-zero nr_ptes on freeing mm",
           no_stack=True),
        _f("bad mm", "BUG: non-zero nr_pmds on freeing mm", "BUG: non-zero nr_pmds on freeing mm",
           no_stack=True),
        _f("dentry in use", "BUG: Dentry .* still in use", "BUG: Dentry still in use in {0}",
           report="BUG: Dentry .* still in use \\([0-9]+\\) \\[(unmount) of ([^\\]]+)\\]"),
        _f("bad page state", "BUG: Bad page (state|cache)", "BUG: Bad page {0} in {1}",
           stack=_stack(_re("page last allocated"), STACK,
                        skip=("(free|put|get|update|release)_page", "free_unref", "^_*folio",
                              "truncate_inode_pages", "page_frag_free", "alloc", "vmap",
                              "page_owner"))),
        _f("bad page map", "BUG: Bad page map", "BUG: Bad page map"),
        _f("workqueue lockup", "BUG: workqueue lockup", "BUG: workqueue lockup", no_stack=True),
        _f("sleeping in invalid context", "BUG: sleeping function called from invalid context "
           "at (.*)", "BUG: sleeping function called from invalid context in {1}",
           stack=_TRACE),
        _f("preemptible", "BUG: using ([a-z_]+)\\(\\) in preemptible",
           "BUG: using {0}() in preemptible code in {1}",
           stack=_stack(CALL_TRACE, STACK, skip=("dump_stack", "preemption", "preempt",
                                                 "debug_", "processor_id", "this_cpu"))),
        _f("workqueue leak", "BUG: workqueue leaked lock or atomic",
           "BUG: workqueue leaked lock or atomic in {0}", no_stack=True,
           report="BUG: workqueue leaked lock or atomic(?:.*\\n)+?.*last function: "
                  "([a-zA-Z0-9_]+)\\n"),
        _f("memory leak", "BUG: memory leak", "memory leak in {0}",
           stack=_stack(_re("backtrace(?: \\(crc [0-9a-fA-F]*\\))?:"), STACK,
                        skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object",
                              "idr_get", "list_lru_init", "kasprintf", "kvasprintf",
                              "pcpu_create", "strdup", "strndup", "memdup"))),
        _f("stack guard page", "BUG: .*stack guard page was hit at",
           "BUG: stack guard page was hit in {0}",
           stack=_stack(RIP_FRAME, CALL_TRACE, STACK, extractor=_STALL)),
        _f("locking bug", "BUG: Invalid wait context", "WARNING: locking bug in {0}",
           stack=_stack(CALL_TRACE, STACK, skip=("lock_sock", "release_sock"))),
        _f("BUG", r"BUG:\s*(?:\n|$)", "BUG: corrupted", corrupted=True),
    ), tuple(_re(p) for p in ("ODEBUG:", "Boot_DEBUG:", "xlog_status:", "DEBUG:",
                              "BUG: no syscalls can create resource"))),
    Group("WARNING:", (
        _f("ODEBUG", "WARNING: .*lib/debugobjects\\.c.* (?:debug_print|debug_check|at)",
           "WARNING: ODEBUG bug in {0}",
           stack=_warning_stack("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_",
                                "vunmap", "vfree", "__free_", "debug_check", "kobject_")),
        _f("bad usercopy", "WARNING: .*mm/usercopy\\.c.* (?:usercopy_warn|at)",
           "WARNING: bad usercopy in {0}", stack=_warning_stack("usercopy", "__check")),
        _f("kobject bug", "WARNING: .*lib/kobject\\.c.* (?:kobject_|at)",
           "WARNING: kobject bug in {0}", stack=_warning_stack("kobject_")),
        _f("proc registration bug", "WARNING: .*fs/proc/generic\\.c.* (?:proc_register|at)",
           "WARNING: proc registration bug in {0}", stack=_warning_stack("proc_")),
        _f("refcount", "WARNING: .*lib/refcount\\.c.* (?:refcount_|at)",
           "WARNING: refcount bug in {0}", stack=_warning_stack("refcount", "kobject_")),
        _f("locking bug", "WARNING: .*kernel/locking/lockdep\\.c.*lock_",
           "WARNING: locking bug in {0}", stack=_warning_stack("lock_sock", "release_sock")),
        _f("locking bug", "WARNING: .*still has locks held!",
           "WARNING: still has locks held in {0}",
           report="WARNING: .*still has locks held!(?:.*\\n)+?.*at: {{FUNC}}"),
        _f("locking bug", "WARNING: Nested lock was not taken",
           "WARNING: nested lock was not taken in {0}", stack=_warning_stack()),
        _f("locking bug", "WARNING: lock held when returning to user space",
           "WARNING: lock held when returning to user space in {0}", no_stack=True,
           report="WARNING: lock held when returning to user space(?:.*\\n)+?.*leaving the "
                  "kernel with locks still held(?:.*\\n)+?.*" + _LOCK_AT),
        _f("kmalloc bug", "WARNING: .*mm/.*\\.c.* k?.?malloc", "WARNING: kmalloc bug in {0}",
           stack=_warning_stack("kmalloc", "krealloc", "slab", "kmem")),
        _f("zero-size vmalloc", "WARNING: .*mm/vmalloc.c.*__vmalloc_node",
           "WARNING: zero-size vmalloc in {0}", stack=_warning_stack()),
        _f("WARNING", "WARNING: .* usb_submit_urb", "WARNING in {0}/usb_submit_urb",
           stack=_warning_stack("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg",
                                "usb_interrupt_msg", "usb_control_msg")),
        # Recent kernels: "WARNING: [cond] file.c:N at func+0x1/0x2, CPU#0: task/pid", or
        # "at 0x0" when the address has no symbol.
        _f("WARNING", r"WARNING: {{SRC}} at 0x\d+, CPU#\d+", "WARNING in {1}",
           stack=_warning_stack()),
        _f("WARNING", "WARNING: .* at {{SRC}} {{FUNC}}", "WARNING in {2}",
           stack=_warning_stack()),
        _f("WARNING", "WARNING: {{SRC}} at {{FUNC}}", "WARNING in {2}", stack=_warning_stack()),
        _f("WARNING", "WARNING: \\[.*\\] {{SRC}} at {{FUNC}}.*", "WARNING in {2}",
           stack=_warning_stack()),
        _f("possible deadlock", "WARNING: possible circular locking dependency detected",
           "possible deadlock in {0}",
           report="WARNING: possible circular locking dependency detected(?:.*\\n)+?.*is "
                  "trying to acquire lock",
           stack=_stack(_re(_LOCK_AT), _re(_LOCK_AT), STACK,
                        skip=("process_one_work", "flush_workqueue", "drain_workqueue",
                              "destroy_workqueue"))),
        _f("possible deadlock", "WARNING: possible irq lock inversion dependency detected",
           "possible deadlock in {0}",
           report="WARNING: possible irq lock inversion dependency detected(?:.*\\n)+?.*just "
                  "changed the state of lock(?:.*\\n)+?.*" + _LOCK_AT),
        _f("possible deadlock", "WARNING: .*-safe -> .*-unsafe lock order detected",
           "possible deadlock in {0}", stack=_stack(_re("which became (?:.*) at:"), STACK)),
        _f("possible deadlock", "WARNING: possible recursive locking detected",
           "possible deadlock in {0}",
           report="WARNING: possible recursive locking detected(?:.*\\n)+?.*is trying to "
                  "acquire lock(?:.*\\n)+?.*" + _LOCK_AT),
        _f("inconsistent lock state", "WARNING: inconsistent lock state",
           "inconsistent lock state in {1}", stack=_TRACE,
           report="WARNING: inconsistent lock state(?:.*\\n)+?.*takes(?:.*\\n)+?.*" + _LOCK_AT),
        _f("suspicious RCU usage", "WARNING: suspicious RCU usage",
           "WARNING: suspicious RCU usage in {1}",
           report="WARNING: suspicious RCU usage(?:.*\\n)+?.*?{{SRC}}",
           stack=_stack(CALL_TRACE, STACK, skip=("rcu", "kmem", "slab"))),
        _f("bad stack", "WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' "
           "value", "WARNING: kernel stack regs has bad '{0}' value", no_stack=True),
        _f("bad stack", "WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad "
           "value", "WARNING: kernel stack frame pointer has bad value", no_stack=True),
        _f("locking bug", "WARNING: bad unlock balance detected!",
           "WARNING: bad unlock balance in {0}",
           stack=_stack(_re("{{PC}} +{{FUNC}}"), CALL_TRACE, STACK)),
        _f("locking bug", "WARNING: held lock freed!", "WARNING: held lock freed in {0}",
           report="WARNING: held lock freed!(?:.*\\n)+?.*at:(?: {{PC}})? +{{FUNC}}"),
        _f("bad stack", "WARNING: kernel stack regs .* has bad 'bp' value",
           "WARNING: kernel stack regs has bad value", no_stack=True),
        _f("bad stack", "WARNING: kernel stack frame pointer .* has bad value",
           "WARNING: kernel stack regs has bad value", no_stack=True),
        _f("WARNING", r"WARNING:\s*(?:\n|$)", "WARNING: corrupted", corrupted=True),
    ), tuple(_re(p) for p in (
        "WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
        "WARNING: workqueue cpumask: online intersect > possible intersect",
        "WARNING: [Tt]he mand mount option",
        "WARNING: Unsupported flag value\\(s\\) of 0x%x in DT_FLAGS_1",
        "WARNING: Unprivileged eBPF is enabled with eIBRS",
        "WARNING: fbcon: Driver '(.*)' missed to adjust virtual screen size",
        "WARNING: See https.* for mitigation options.", "WARNING: kernel not compiled with "
        "CPU_SRSO", r"EXT4-[Ff][Ss](?: \(.*\))?:",
        "(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)",
        r"XFS \(\w+\): WARNING",
    ))),
    Group("INFO:", (
        _f("possible deadlock", "INFO: possible circular locking dependency detected",
           "possible deadlock in {0}",
           report="INFO: possible circular locking dependency detected \\](?:.*\\n)+?.*is "
                  "trying to acquire lock(?:.*\\n)+?.*at: {{PC}} +{{FUNC}}"),
        _f("possible deadlock", "INFO: possible irq lock inversion dependency detected",
           "possible deadlock in {0}",
           report="INFO: possible irq lock inversion dependency detected \\](?:.*\\n)+?.*just "
                  "changed the state of lock(?:.*\\n)+?.*at: {{PC}} +{{FUNC}}"),
        _f("possible deadlock", "INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected",
           "possible deadlock in {0}",
           report="INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected \\](?:.*\\n)+?.*is "
                  "trying to acquire(?:.*\\n)+?.*at: {{PC}} +{{FUNC}}"),
        _f("possible deadlock", "INFO: possible recursive locking detected",
           "possible deadlock in {0}",
           report="INFO: possible recursive locking detected \\](?:.*\\n)+?.*is trying to "
                  "acquire lock(?:.*\\n)+?.*at: {{PC}} +{{FUNC}}"),
        _f("inconsistent lock state", "INFO: inconsistent lock state",
           "inconsistent lock state in {0}",
           report="INFO: inconsistent lock state \\](?:.*\\n)+?.*takes(?:.*\\n)+?.*at: {{PC}} "
                  "+{{FUNC}}"),
        # A CPU that reports its own stall prints its registers and trace; on kernels that
        # do so without IRQ frames (6.1 under TCG) that trace is where it loops.
        _f("rcu stall", "INFO: rcu_(?:preempt|sched|bh|tasks) self-detected(?: expedited)? "
           "stall", "INFO: rcu detected stall in {0}",
           stack=_stack(*_RCU_STALL_PARTS, fallbacks=(_RCU_STALL_PARTS2,
                                                      (RIP_FRAME, CALL_TRACE, STACK)),
                        skip=_RCU_STALL_SKIP, extractor=_STALL)),
        _f("rcu stall", "INFO: rcu_(?:preempt|sched|bh|tasks) (?:self-)?detected(?: expedited)?"
           " stall", "INFO: rcu detected stall in {0}",
           stack=_stack(*_RCU_STALL_PARTS, fallbacks=(_RCU_STALL_PARTS2,),
                        skip=_RCU_STALL_SKIP, extractor=_STALL)),
        _f("non-static key", "INFO: trying to register non-static key",
           "INFO: trying to register non-static key in {0}",
           stack=_stack(CALL_TRACE, STACK, skip=("stack", "lock", "IRQ"))),
        _f("suspicious RCU usage", "INFO: suspicious RCU usage",
           "INFO: suspicious RCU usage in {1}",
           report="INFO: suspicious RCU usage(?:.*\\n)+?.*?{{SRC}}",
           stack=_stack(CALL_TRACE, STACK, skip=("rcu", "kmem", "slab"))),
        _f("hung task", "INFO: task {{TASK}} blocked (?:in I/O wait )?for more than [0-9]+ "
           "seconds", "INFO: task hung in {0}", stack=_stack(CALL_TRACE, STACK,
                                                             extractor="hang")),
        _f("task can't die", "INFO: task {{TASK}} can't die for more than .* seconds",
           "INFO: task can't die in {0}", stack=_stack(CALL_TRACE, STACK, skip=("schedule",))),
        _f("slab debug", "INFO: (Freed|Allocated) in (.*)", "INFO: {0} in {1}", corrupted=True),
        _f("INFO", r"INFO:\s*(?:\n|$)", "INFO: corrupted", corrupted=True),
    ), tuple(_re(p) for p in (
        "INFO: lockdep is turned off", "INFO: Stall ended before state dump start",
        "INFO: NMI handler", "INFO: recovery required on readonly filesystem",
        "(handler|interrupt).*took too long", "INFO: sys_.* is not present in /proc/kallsyms",
        "INFO: no syscalls can create resource", "rmt_storage:INFO:", "_INFO:",
    ))),
    Group("Unable to handle kernel", (
        _f("bad access", "Unable to handle kernel (paging request|NULL pointer dereference|"
           "access to user memory)", "BUG: unable to handle kernel {0} in {1}", stack=_FAULT),
    )),
    Group("general protection fault", (
        _f("general protection fault", "general protection fault.*:",
           "general protection fault in {0}", stack=_FAULT),
    ), (_re(r"general protection fault .* error:\d+ in "),)),
    Group("stack segment: ", (
        _f("stack segment", "stack segment: ", "stack segment fault in {0}", stack=_FAULT),
    )),
    Group("Kernel panic", (
        _f("kernel panic", "Kernel panic - not syncing: stack-protector:",
           "kernel panic: stack is corrupted in {0}", no_stack=True, panicked=True,
           report="Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
                  "{{FUNC}}"),
        _f("kernel panic", "Kernel panic - not syncing: stack-protector:",
           "kernel panic: stack is corrupted in {0}", panicked=True,
           report="Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
                  "[a-f0-9]+",
           stack=_stack(CALL_TRACE, STACK, skip=("stack_chk",))),
        _f("kernel panic", "Kernel panic - not syncing: corrupted stack end",
           "kernel panic: corrupted stack end in {0}", panicked=True,
           report="Kernel panic - not syncing: corrupted stack end detected inside scheduler",
           stack=_stack(CALL_TRACE, STACK, skip=("schedule", "retint_kernel"),
                        extractor=_STALL)),
        _f("kernel panic", "Kernel panic - not syncing: kernel stack overflow",
           "kernel stack overflow in {0}", panicked=True,
           stack=_stack(CALL_TRACE, STACK, skip=("bad_stack",), extractor=_STALL)),
        _f("kernel panic", "Kernel panic - not syncing: Attempted to kill init!",
           "kernel panic: Attempted to kill init!", panicked=True),
        _f("kernel panic", "Kernel panic - not syncing: Couldn't open N_TTY ldisc for [^ ]+ "
           "--- error -[0-9]+", "kernel panic: Couldn't open N_TTY ldisc", panicked=True),
        # Printed after another report: as the title, that report's header was lost.
        _f("kernel panic", "Kernel panic - not syncing: Fatal exception",
           "kernel panic: Fatal exception", corrupted=True, panicked=True),
        _f("kernel panic", "Kernel panic - not syncing: panic_on_warn set",
           "kernel panic: panic_on_warn set", corrupted=True, panicked=True),
        _f("kernel panic", "Kernel panic - not syncing: hung_task: blocked tasks",
           "kernel panic: hung_task: blocked tasks", corrupted=True, panicked=True),
        _f("kernel panic", "Kernel panic - not syncing: (.*)", "kernel panic: {0}",
           panicked=True),
    )),
    Group("PANIC: double fault", (
        _f("double fault", "PANIC: double fault", "PANIC: double fault in {0}",
           stack=_stack(RIP_FRAME), panicked=True),
    )),
    Group("rust_kernel: panicked", (
        _f("rust panic", "rust_kernel: panicked", "{0} in {1}",
           report="rust_kernel: panicked at [^\\n]*?\\n(.+?)\\n",
           stack=_stack(CALL_TRACE, STACK, skip=(re.escape("__rustc::rust_begin_unwind"),))),
    )),
    Group("kernel BUG", (
        _f("bad usercopy", "kernel BUG at mm/usercopy.c", "BUG: bad usercopy in {0}",
           stack=_stack(CALL_TRACE, STACK, skip=("usercopy", "__check"))),
        _f("corrupted list", "kernel BUG at lib/list_debug.c", "BUG: corrupted list in {0}",
           stack=_TRACE),
        _f("kernel BUG", "kernel BUG at (.*)", "kernel BUG in {1}",
           stack=_stack(RIP_FRAME, CALL_TRACE, STACK, skip=("^skb_",))),
    )),
    Group("Kernel BUG", (_f("kernel BUG", "Kernel BUG (.*)", "kernel BUG {0}"),)),
    Group("BUG kmalloc-", (
        _f("slab debug", "BUG kmalloc-.*: Object already free", "BUG: Object already free"),
    )),
    Group("divide error:", (
        _f("divide error", "divide error: ", "divide error in {0}", stack=_stack(RIP_FRAME)),
    )),
    Group("divide_error:", (
        _f("divide error", "divide_error: ", "divide error in {0}", stack=_stack(RIP_FRAME)),
    )),
    Group("invalid opcode:", (
        _f("invalid opcode", "invalid opcode: ", "invalid opcode in {0}",
           stack=_stack(RIP_FRAME)),
    )),
    Group("int3:", (_f("int3", "int3: ", "int3 in {0}", stack=_FAULT),)),
    Group("UBSAN:", (
        _f("UBSAN", "UBSAN:", "UBSAN: undefined-behaviour in {0}",
           report="UBSAN: Undefined behaviour in",
           stack=_stack(CALL_TRACE, STACK, skip=("ubsan", "overflow"))),
        _f("UBSAN", "UBSAN: array-index-out-of-bounds in",
           "UBSAN: array-index-out-of-bounds in {0}",
           stack=_stack(CALL_TRACE, STACK, skip=("ubsan", "overflow"))),
        _f("UBSAN", "UBSAN:", "UBSAN: {0} in {1}", report="UBSAN: (.*?) in",
           stack=_stack(CALL_TRACE, STACK, skip=("ubsan", "overflow"))),
    )),
    Group("Booting the kernel.", (
        _f("reboot", "^Booting the kernel", "unexpected kernel reboot", no_stack=True),
    ), (_re("Parsing ELF|Decompressing Linux|Unknown parameter '"),)),
    Group("unregister_netdevice: waiting for", (
        _f("netdevice leak", "unregister_netdevice: waiting for (?:.*) to become free",
           "unregister_netdevice: waiting for DEV to become free", no_stack=True),
    )),
    Group("VFS: Close: file count is 0", (
        _f("use-after-free", "VFS: Close: file count is 0",
           "VFS: Close: file count is zero (use-after-free)", no_stack=True),
    )),
    Group("VFS: Busy inodes after unmount", (
        _f("use-after-free", "VFS: Busy inodes after unmount",
           "VFS: Busy inodes after unmount (use-after-free)", no_stack=True),
    )),
    Group("Internal error:", (
        _f("Internal error", "Internal error:", "Internal error in {0}", stack=_FAULT),
    )),
    Group("Unhandled fault:", (
        _f("Unhandled fault", "Unhandled fault:", "Unhandled fault in {0}", stack=_FAULT),
    )),
    Group("Alignment trap:", (
        _f("Alignment trap", "Alignment trap:", "Alignment trap in {0}", stack=_FAULT),
    )),
    Group("trusty: panic", (
        _f("trusty", "trusty: panic.* ASSERT FAILED", "trusty: ASSERT FAILED: {0}",
           no_stack=True,
           report="trusty: panic \\(.*?\\):(?: DEBUG)? ASSERT FAILED at \\(.*?\\): (.+)"),
        _f("trusty", "trusty: panic.* ASSERT FAILED.*: *(.*)", "trusty: ASSERT FAILED: {0}",
           corrupted=True),
        _f("trusty", "trusty: panic", "trusty: panic: {0}", no_stack=True,
           report="trusty: panic \\(.*?\\): (.+)"),
    )),
    # Not the kernel's: the programs that drive a guest failing on its console (a Go runtime,
    # syzkaller's executor). syzkaller's Linux table ends with these; here "panic:" and "fatal
    # error:" count only at a message's start, so that a driver's "mydev: fatal error: ..."
    # stays a message.
    Group("fatal error:", (_f("Go runtime", "fatal error:", "go runtime error", no_stack=True),),
          tuple(_re(p) for p in ("ALSA", "fatal error: cannot create timer")), after_lead=False),
    Group("SYZFAIL:", (_f("executor", "SYZFAIL:(.*)", "SYZFAIL:{0}", no_stack=True),)),
    Group("SYZFATAL:", (_f("executor", "SYZFATAL:(.*)", "SYZFATAL:{0}", no_stack=True),)),
    Group("panic:", (
        _f("Go runtime", "panic: Sentry detected .* stuck task",
           "panic: Sentry detected stuck tasks", no_stack=True),
        _f("Go runtime", "panic:(.*)", "panic:{0}", no_stack=True),
    ), tuple(_re(p) for p in ("_panic:", "xlog_status:", r"ddb\.onpanic:", "evtlog_status:")),
        after_lead=False),
)

# The words that start a report; a line without one is none.
HEADER_WORDS = tuple(group.word for group in GROUPS)
# What a log is searched for to find header lines: each header word holds one of these, and
# fewer, shorter words are fewer passes over the log (the lines found are then checked whole).
HEADER_ANCHORS = ("BUG", "WARNING:", "INFO:", "Unable to handle kernel", "protection fault",
                  "stack segment: ", "anic", "divide", "invalid opcode:", "int3:", "UBSAN:",
                  "Booting the kernel.", "unregister_netdevice: waiting for", "VFS: ",
                  "Internal error:", "Unhandled fault:", "Alignment trap:", "PANIC: double fault",
                  "fatal error:", "SYZFA")
# What may precede a header word on its line: indentation, old lockdep's "[ ", a syzkaller
# date, a login prompt, one subsystem tag ("rcu: ", "watchdog: "), and the KASAN hint that 4.x
# kernels print with no newline before the fault. Not any message text: a module's
# "mydev: read a BUG: marker" is no crash.
HEADER_LEAD = _re(r"\s*(?:\[ |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |\S+ login: |segment-related |"
                  r"[A-Za-z][\w ]{0,20}: |"
                  r"kasan: GPF could be caused by NULL-ptr deref or user memory access)?")
# Messages that come with a stack trace of their own but are no crash: one inside a report
# (on a console without caller ids) ends what can be read of it.
MESSAGES_WITH_STACK = ("vmalloc: allocation failure:", "FAULT_INJECTION: forcing a failure",
                       "FAULT_FLAG_ALLOW_RETRY missing")
# Headers that do not start a report of their own inside another one.
FOLLOW_UPS = _re(r"invalid opcode: 0000|Kernel panic - not syncing|unregister_netdevice: waiting"
                 r" for|PANIC: double fault|Internal error:")
# The interrupt-context parts of a stack dump.
IRQ_START = _re(r"^<(?:IRQ|NMI|EOI)>$")
IRQ_END = _re(r"^</?(?:IRQ|NMI|EOI)>$|^<TASK>$")
FUNC = r"(?P<func>[A-Za-z_.$][\w.$]*)\+0x(?P<offset>[0-9a-f]+)/0x(?P<length>[0-9a-f]+)"
# Lines that end a report.
REPORT_END = _re(r"^---\[ end (?:trace [0-9a-f]+|Kernel panic - not syncing.*) \]---|"
                 r"^---\[ end trace")
# The instruction pointer line, x86 and arm64 styles, for the module frame.
RIP = _re(r"^(?:RIP: (?:[0-9a-f]{4}:)?|IP: |pc : |PC is at |EIP: (?:[0-9a-f]{4}:)?)"
          r"(?:\[<[0-9a-f]+>\] )?" + FUNC + r"(?:\s+\[(?P<module>[\w-]+)\])?")
# A call-trace frame with its offsets and module; a leading "? " marks an unreliable one.
FRAME = _re(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?(?P<unreliable>\? )?" + FUNC +
            r"(?:\s+\[(?P<module>[\w-]+)\])?")
# Parts of titles that vary between occurrences of the same crash (syzkaller's replacements).
TITLE_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_re(r"syz-executor\.?[0-9]+((/|:)[0-9]+)?"), "syz-executor"),
    (_re(r"syzkaller[0-9]+((/|:)[0-9]+)?"), "syzkaller"),
    (_re(r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}"), r"\1ADDR"),
    (_re(r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})"), "IP"),
    (_re(r"(\.\w+)(:[0-9]+)+"), r"\1:LINE"),
    (_re(r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+"), r"\1"),
    (_re(r"CPU#[0-9]+"), "CPU"),
    (_re(r"(\W)(\d+)(\W|$)"), r"\1NUM\3"),
    (_re(r"(\d+){7,}"), "NUM"),
)
