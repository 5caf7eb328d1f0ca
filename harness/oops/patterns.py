"""The crash vocabulary, as data (after syzkaller's ``pkg/report/linux.go``).

Each :class:`CrashFormat` row recognises one kind of report by its header line and says how to
title it. Titles read ``KIND in FUNCTION``; ``{func}`` is the guilty function, found by
``guilty`` (where to look for it) and skipping the helper frames in ``SKIP_FRAMES``. Adding a
crash class is adding a row. Order matters: the first matching row wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Where the guilty function comes from, tried in order:
#   "header": the header's own (?P<func>...) group; "rip": the RIP/PC line of the block;
#   "stack": the first reliable call-trace frame that is not a helper.
GUILTY_OOPS = ("header", "rip", "stack")
GUILTY_STACK = ("header", "stack", "rip")
GUILTY_TASK = ("task", "rip")  # the first frame outside <IRQ>/<NMI> blocks (stalls, lockups)
GUILTY_LOCK = ("lock", "stack")  # the function named by lockdep's first "at: func+0x" line


@dataclass(frozen=True)
class CrashFormat:
    kind: str
    header: re.Pattern[str]
    title: str  # format string: {func} and the header's named groups
    guilty: tuple[str, ...] = GUILTY_OOPS
    no_func: bool = False  # the title has no function (e.g. kernel panic: MESSAGE)
    panicked: bool = False
    skip: tuple[str, ...] = ()  # extra helper frames for this class
    suppress: tuple[re.Pattern[str], ...] = field(default=())  # header lines to ignore


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


FUNC = r"(?P<func>[A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+"

# Frames that are never the guilty one: reporting, locking and allocation helpers.
SKIP_FRAMES = _re(
    r"^(?:dump_stack\w*|show_stack|show_regs|__?warn\w*|warn_slowpath\w*|report_bug|"
    r"handle_bug|exc_\w+|asm_exc_\w+|do_error_trap|do_trap|do_invalid_op|invalid_op|"
    r"die|oops_\w+|__die\w*|no_context|__bad_area\w*|bad_area\w*|page_fault|do_page_fault|"
    r"__do_page_fault|handle_page_fault|do_user_addr_fault|do_kern_addr_fault|"
    r"kernelmode_fixup_or_oops|page_fault_oops|spurious_kernel_fault|"
    r"panic|__panic|printk\w*|_printk|vprintk\w*|print_\w+|_*kasan\w*|"
    r"check_memory_region\w*|__asan\w*|kmsan\w*|__msan\w*|ubsan\w*|__ubsan\w*|"
    r"kfence\w*|__kfence\w*|lockdep\w*|__lockdep\w*|lock_acquire\w*|lock_release|"
    r"__lock_acquire|lock_is_held\w*|_raw_\w+|do_raw_\w+|__raw_\w+|spin_\w+|"
    r"queued_\w+|native_queued_\w+|__pv_queued\w*|mutex_lock\w*|mutex_unlock\w*|"
    r"__mutex_\w+|down_\w+|up_\w+|rwsem_\w+|__rwsem\w*|__down\w*|__up\w*|"
    r"__?schedule\w*|schedule\w*|msleep\w*|ssleep|usleep_range\w*|__?udelay|"
    r"preempt_schedule\w*|io_schedule\w*|"
    r"__?might_\w+|___might_sleep|might_fault|__cond_resched|_cond_resched|"
    r"refcount_\w+|__refcount_\w+|__list_\w+|list_\w+_valid\w*|__list_\w+_valid\w*|"
    r"kmalloc\w*|__kmalloc\w*|kmem_cache_\w+|__kmem_cache\w*|slab_\w+|__slab\w*|"
    r"kzalloc\w*|kcalloc|kfree\w*|__kfree\w*|krealloc\w*|kmemdup\w*|kstrdup\w*|"
    r"___slab_alloc|__slab_alloc|new_slab|allocate_slab|alloc_pages\w*|__alloc_pages\w*|"
    r"debug_\w+|__debug_\w+|check_\w+|__check_\w+|should_fail\w*|"
    r"watchdog\w*|apic_timer_interrupt|smp_apic_timer_interrupt|"
    r"sysvec_apic_timer_interrupt|asm_sysvec_\w+|sysvec_\w+|irq_exit\w*|__irq_exit\w*|"
    r"__sysvec_\w+|hrtimer_\w+|__hrtimer_\w+|tick_\w+|update_process_times|"
    r"rcu_(?:sched_clock_irq|pending|check_\w+|dump_\w+|print_\w+|stall\w*|report\w*)|"
    r"print_cpu_stall\w*|check_cpu_stall|__rcu_pending|"
    r"nmi_\w+|arch_trigger_\w+|trigger_\w+_backtrace\w*|"
    r"entry_SYSCALL\w*|do_syscall_\w+|__x64_sys_\w+|x64_sys_call|"
    r"ret_from_fork\w*|kthread|worker_thread|process_one_work|"
    r"do_one_initcall|do_init_module|load_module|__do_sys_finit_module|"
    r"__se_sys_finit_module|__do_sys_init_module|"
    r"fixup_bug|kmemleak\w*|__warn_printk|lockdep_rcu_suspicious|__this_cpu_preempt_check|"
    r"check_preemption_disabled|debug_smp_processor_id|"
    r"__x86_return_thunk|srso_\w+|__memcpy|memcpy\w*|memset\w*|strcpy|strlen|"
    r"copy_\w+_user\w*|_copy_\w+_user|__copy_\w+_user\w*|"
    r"bug_handler|__bug\w*|BUG|WARN\w*|"
    r"object_err|free_debug_processing|on_freelist|"
    r"__local_bh_enable\w*|local_bh_enable|__do_softirq|do_softirq\w*|invoke_softirq|"
    # string and copy helpers, compiler instrumentation, indirect-call thunks
    r"memcmp|memmove|__memmove|__memset|string|strcmp|strncmp|strnlen|strlcpy|strscpy|"
    r"__sanitizer_cov\w*|__x86_indirect_thunk_\w+|__stack_chk_fail|save_stack\w*|"
    r"osq_lock|skb_panic|skb_over_panic|skb_under_panic|panic_saved_regs|"
    # lockdep internals
    r"register_lock_class|look_up_lock_class|mark_lock\w*|validate_chain|check_noncircular|"
    r"__bfs\w*|print_circular_bug\w*|lockdep_init_map\w*|__lockdep_init_map|"
    # waiting and sleeping: a hung task's own frames
    r"wait_for_completion\w*|__wait_for_common|do_wait_for_common|wait_for_common\w*|"
    r"finish_wait|prepare_to_wait\w*|context_switch|__switch_to\w*|"
    r"wait_on_page_bit\w*|__wait_on_bit\w*|out_of_line_wait_on_bit\w*|wait_on_bit\w*|"
    r"bit_wait\w*|call_rwsem_down_\w+|rt_mutex\w*|__rt_mutex\w*|percpu_down_\w+|"
    r"__percpu_down\w*|down|__down_common|flush_work|__flush_work|"
    # stall reporting
    r"sched_show_task|dump_cpu_task|rcu_gp_kthread|rcu_dynticks\w*|local_apic_timer_interrupt|"
    # allocation wrappers (memory leaks name the caller)
    r"create_object|sk_prot_alloc|sk_alloc|radix_tree_node_alloc|pcpu_mem_zalloc|"
    r"pcpu_alloc|__alloc_percpu\w*|idr_get_free|kvmalloc\w*|kvzalloc|vmalloc\w*|"
    r"__vmalloc\w*|kvfree|vfree|__vunmap|warn_alloc|"
    r"kobject_get|kobject_put|kobject_del|kobject_add_internal|device_del|__call_rcu|"
    r"call_rcu|"
    # stack walkers, fortify and assertion helpers, tree and list primitives
    r"dump_backtrace|walk_stackframe|stack_trace_consume_entry|arch_stack_walk|"
    r"stack_trace_save\w*|fortify_panic|__fortify_report|__fortify_panic|assertfail|"
    r"__reiserfs_panic|skb_push|skb_put|rb_\w+|__rb_\w+|klist_\w+|mutex_optimistic_spin|"
    r"_copy_to_iter|_copy_from_iter|warn_bogus_irq_restore|ref_tracker_free|drop_nlink|"
    r"_atomic_dec_and\w*|__wake_up\w*|test_and_\w+_bit|xas_\w+|post_alloc_hook|"
    r"rcu_gp_fqs_loop|rcu_is_watching|irqentry_exit\w*|__run_hrtimer\w*|on_each_cpu\w*|"
    r"kthread_should_park|dev_vprintk_emit|smp_call_function_many\w*)$"
)

_LIST_SKIP = (r"^__list_(?:add|del)\w*$", r"^list_\w+$")

FORMATS: tuple[CrashFormat, ...] = (
    # --- memory-safety tools, whose header names the function -----------------------------------
    CrashFormat("KASAN", _re(r"^BUG: KASAN: (?P<what>[\w-]+) in " + FUNC + r" at addr"),
                "KASAN: {what} in {func} at addr ADDR", GUILTY_OOPS),
    CrashFormat("KASAN", _re(r"^BUG: KASAN: (?P<what>null-ptr-deref|wild-memory-access) "
                             r"(?:in range|on address)"),
                "KASAN: {what}{access}", no_func=True),
    CrashFormat("KASAN", _re(r"^BUG: KASAN: double-free(?: or invalid-free)? in " + FUNC),
                "KASAN: invalid-free in {func}", GUILTY_OOPS),
    CrashFormat("KASAN", _re(r"^BUG: KASAN: (?P<what>[\w-]+(?: [\w-]+)*?)(?: in " + FUNC +
                             r"| on address| in range|$)"),
                "KASAN: {what}{access} in {func}", GUILTY_OOPS),
    CrashFormat("KFENCE", _re(r"^BUG: KFENCE: (?P<what>[\w -]+?) in " + FUNC),
                "KFENCE: {what} in {func}"),
    CrashFormat("KMSAN", _re(r"^BUG: KMSAN: (?P<what>[\w-]+) in " + FUNC),
                "KMSAN: {what} in {func}"),
    CrashFormat("KCSAN", _re(r"^BUG: KCSAN: (?P<what>[\w-]+(?:: [\w-]+)?) in " + FUNC),
                "KCSAN: {what} in {func}"),
    CrashFormat("UBSAN", _re(r"^UBSAN: (?P<what>[\w-]+) in "), "UBSAN: {what} in {func}",
                GUILTY_STACK),
    CrashFormat("UBSAN", _re(r"^UBSAN: Undefined behaviour in "),
                "UBSAN: undefined-behaviour in {func}", GUILTY_STACK),
    CrashFormat("memory leak", _re(r"^BUG: memory leak$"), "memory leak in {func}",
                ("stack",)),
    # --- page faults -----------------------------------------------------------------------------
    CrashFormat("NULL pointer dereference",
                _re(r"^BUG: (?:unable to handle kernel NULL pointer dereference|"
                    r"kernel NULL pointer dereference)"),
                "BUG: unable to handle kernel NULL pointer dereference in {func}"),
    CrashFormat("NULL pointer dereference",
                _re(r"^Unable to handle kernel NULL pointer dereference"),
                "BUG: unable to handle kernel NULL pointer dereference in {func}"),
    CrashFormat("paging request",
                _re(r"^(?:BUG: unable to handle (?:kernel paging request|page fault)|"
                    r"Unable to handle kernel paging request)"),
                "BUG: unable to handle kernel paging request in {func}"),
    CrashFormat("general protection fault",
                _re(r"^(?:Oops: )?(?:segment-related )?general protection fault"),
                "general protection fault in {func}"),
    CrashFormat("divide error", _re(r"^divide(?: |_)error: "), "divide error in {func}"),
    CrashFormat("stack segment", _re(r"^stack segment: "), "stack segment fault in {func}"),
    CrashFormat("double fault", _re(r"^PANIC: double fault"), "PANIC: double fault in {func}",
                panicked=True),
    CrashFormat("stack guard page", _re(r"^BUG: (?:TASK )?stack guard page was hit"),
                "BUG: stack guard page was hit in {func}"),
    # --- BUG_ON and friends ----------------------------------------------------------------------
    CrashFormat("corrupted list",
                _re(r"^(?:list_(?:add|del) corruption|list_del corruption|"
                    r"slab corruption|list_add double add)"),
                "BUG: corrupted list in {func}", GUILTY_STACK, skip=_LIST_SKIP),
    CrashFormat("kernel BUG", _re(r"^kernel BUG at (?P<file>\S+?):\d+!?"), "kernel BUG in {func}"),
    CrashFormat("invalid opcode", _re(r"^invalid opcode: "), "invalid opcode in {func}"),
    CrashFormat("Internal error", _re(r"^Internal error: "), "Internal error in {func}"),
    CrashFormat("Unhandled fault", _re(r"^Unhandled fault"), "Unhandled fault in {func}"),
    CrashFormat("Oops", _re(r"^Oops: [0-9a-fx]+ \[#\d+\]"), "Oops in {func}"),
    CrashFormat("dentry in use", _re(r"^BUG: Dentry .* still in use"),
                "BUG: Dentry still in use in {func}", GUILTY_STACK),
    # --- lockups and stalls ----------------------------------------------------------------------
    CrashFormat("soft lockup", _re(r"BUG: soft lockup - CPU#\d+ stuck"),
                # The RIP is where the CPU spins: the most useful name for a module author.
                "BUG: soft lockup in {func}", ("rip", "task")),
    CrashFormat("hard lockup", _re(r"Watchdog detected hard LOCKUP on cpu"),
                "BUG: hard lockup in {func}"),
    CrashFormat("hung task",
                _re(r"^INFO: task .+:\d+ blocked (?:in I/O wait )?for more than \d+ seconds"),
                "INFO: task hung in {func}", GUILTY_STACK),
    CrashFormat("task can't die", _re(r"^INFO: task .+:\d+ can't die for more than"),
                "INFO: task can't die in {func}", GUILTY_STACK),
    CrashFormat("rcu stall",
                _re(r"^(?:rcu: )?INFO: rcu_(?:sched|preempt|bh) (?:self-)?detected (?:stall|"
                    r"expedited stall)|^(?:rcu: )?INFO: rcu_(?:sched|preempt|bh) detected stalls|"
                    r"^INFO: rcu_tasks(?:_trace)? detected stalls"),
                "INFO: rcu detected stall in {func}", GUILTY_TASK),
    CrashFormat("workqueue lockup", _re(r"^BUG: workqueue lockup"), "BUG: workqueue lockup",
                no_func=True),
    # --- context violations ----------------------------------------------------------------------
    CrashFormat("scheduling while atomic", _re(r"^BUG: scheduling while atomic"),
                "BUG: scheduling while atomic in {func}", GUILTY_STACK),
    CrashFormat("sleeping in invalid context",
                _re(r"^BUG: sleeping function called from invalid context"),
                "BUG: sleeping function called from invalid context in {func}", GUILTY_STACK),
    CrashFormat("preemptible",
                _re(r"^BUG: using (?P<what>\w+\(\)) in preemptible"),
                "BUG: using {what} in preemptible code in {func}", GUILTY_STACK),
    CrashFormat("spinlock", _re(r"^BUG: spinlock (?P<what>[\w ]+?) on CPU"),
                "BUG: spinlock {what} in {func}", GUILTY_STACK),
    CrashFormat("bad page state", _re(r"^BUG: Bad page (?P<what>state|map)"),
                "BUG: Bad page {what} in {func}", GUILTY_STACK),
    CrashFormat("slab debug", _re(r"^BUG [\w.-]+ \([^)]*\): (?P<what>[^,]+?)\s*$"),
                "BUG: {what}", no_func=True),
    CrashFormat("slab debug", _re(r"^INFO: (?P<event>Allocated|Freed) in " + FUNC +
                                  r" (?P<rest>age=.*)$"),
                "INFO: {event} in {func} {rest}", no_func=False),
    CrashFormat("busy inodes", _re(r"^VFS: Busy inodes after unmount"),
                "VFS: Busy inodes after unmount (use-after-free)", no_func=True),
    CrashFormat("bad rss", _re(r"^BUG: Bad rss-counter state"), "BUG: Bad rss-counter state",
                no_func=True),
    CrashFormat("bad usercopy",
                _re(r"^usercopy: [Kk]ernel memory (?:exposure|overwrite) attempt"),
                "BUG: bad usercopy in {func}", GUILTY_STACK),
    # --- lockdep -------------------------------------------------------------------------------
    CrashFormat("possible deadlock",
                _re(r"^(?:WARNING|INFO): possible (?:circular locking dependency|recursive locking)"
                    r" detected|^(?:WARNING|INFO): \S+-safe -> \S+-unsafe lock order detected|"
                    r"^(?:WARNING|INFO): possible irq lock inversion dependency detected"),
                "possible deadlock in {func}", GUILTY_LOCK),
    CrashFormat("inconsistent lock state", _re(r"^(?:WARNING|INFO): inconsistent lock state"),
                "inconsistent lock state in {func}", GUILTY_LOCK),
    CrashFormat("suspicious RCU usage", _re(r"^(?P<level>WARNING|INFO): suspicious RCU usage"),
                "{level}: suspicious RCU usage in {func}", GUILTY_STACK),
    CrashFormat("locking bug", _re(r"^(?P<level>WARNING|BUG): (?:\S+ )?(?P<what>bad unlock balance|"
                                   r"held lock freed|still has locks held|"
                                   r"lock held when returning to user space)"),
                "{level}: {what} in {func}", GUILTY_LOCK),
    CrashFormat("non-static key", _re(r"^INFO: trying to register non-static key"),
                "INFO: trying to register non-static key in {func}", GUILTY_STACK),
    # --- warnings ------------------------------------------------------------------------------
    CrashFormat("refcount", _re(r"^refcount_t: (?P<what>[\w-]+)"),
                "WARNING: refcount bug in {func}", GUILTY_STACK),
    CrashFormat("ODEBUG", _re(r"^ODEBUG: \w+"), "WARNING: ODEBUG bug in {func}", GUILTY_STACK),
    CrashFormat("locking bug", _re(r"^WARNING: CPU: \d+ PID: \d+ at kernel/locking/lockdep\.c"),
                "WARNING: locking bug in {func}", GUILTY_STACK),
    CrashFormat("kmalloc bug", _re(r"^WARNING: CPU: \d+ PID: \d+ at mm/slab_common\.c"),
                "WARNING: kmalloc bug in {func}", GUILTY_STACK),
    CrashFormat("kobject bug", _re(r"^WARNING: CPU: \d+ PID: \d+ at lib/kobject\.c"),
                "WARNING: kobject bug in {func}", GUILTY_STACK),
    CrashFormat("WARNING",
                _re(r"^WARNING: (?:CPU: \d+ PID: \d+ |at )?(?:at )?\S+:\d+ " + FUNC),
                "WARNING in {func}", GUILTY_OOPS),
    CrashFormat("WARNING", _re(r"^WARNING: CPU: \d+ PID: \d+ at " + FUNC),
                "WARNING in {func}", GUILTY_OOPS),
    # Recent kernels: "WARNING: [cond] file.c:N at func+0x1/0x2, CPU#0: task/pid", the
    # condition optional, and "at 0x0" when the address has no symbol.
    CrashFormat("WARNING", _re(r"^WARNING: (?:\[.*?\] )?\S+:\d+ at (?:" + FUNC +
                               r"|0x[0-9a-f]+), CPU#\d+"),
                "WARNING in {func}", GUILTY_OOPS),
    CrashFormat("WARNING", _re(r"^WARNING: kernel stack (?P<what>regs|frame pointer) at\s.*? in "
                               r"\S+ has bad (?P<value>'bp' value|value)"),
                "WARNING: kernel stack {what} has bad {value}", no_func=True),
    CrashFormat("WARNING", _re(r"^WARNING: (?P<what>[a-z][^:]*?)$"), "WARNING: {what}",
                no_func=True),
    # --- panics ----------------------------------------------------------------------------------
    CrashFormat("kernel panic", _re(r"^Kernel panic - not syncing: stack-protector: Kernel stack "
                                    r"is corrupted in: (?:" + FUNC + ")?"),
                "kernel panic: stack is corrupted in {func}", GUILTY_OOPS, panicked=True),
    CrashFormat("kernel panic", _re(r"^Kernel panic - not syncing: corrupted stack end detected"),
                "kernel panic: corrupted stack end in {func}", GUILTY_STACK, panicked=True),
    CrashFormat("kernel panic", _re(r"^Kernel panic - not syncing: (?P<message>Fatal exception)"),
                "kernel panic: {message}", no_func=True, panicked=True),
    CrashFormat("kernel panic", _re(r"^Kernel panic - not syncing: (?P<message>.*?)"
                                    r"(?: for \S+ --- error.*| in interrupt)?$"),
                "kernel panic: {message}", no_func=True, panicked=True),
    # --- generic fallbacks ---------------------------------------------------------------------
    CrashFormat("BUG", _re(r"^BUG: (?P<what>[A-Za-z][^:\[!]*?)(?:!|:| at | in |$)"),
                "BUG: {what} in {func}", GUILTY_STACK),
)

# Words one of which every header above contains: a line without any is no header, and
# FORMATS is not tried on it (most lines of a log). A new row needs its word here; the corpus
# test checks that the prefilter changes no detection.
HEADER_WORDS = (
    "BUG", "UBSAN", "Unable to handle", "general protection", "divide", "stack segment",
    "PANIC", "corruption", "double add", "invalid opcode", "Internal error", "Unhandled fault",
    "Oops", "LOCKUP", "INFO:", "VFS:", "usercopy:", "WARNING", "refcount_t:", "ODEBUG:",
    "Kernel panic",
)
HEADER_HINT = re.compile("|".join(re.escape(word) for word in HEADER_WORDS))

# The interrupt-context parts of a stack dump, whose frames are the reporter, not the culprit.
IRQ_START = _re(r"^<(?:IRQ|NMI|EOI)>$")
IRQ_END = _re(r"^</?(?:IRQ|NMI|EOI)>$|^<TASK>$")
# Lockdep's lines naming where a lock was taken: "(&lock){+.+.}, at: func+0x1/0x2".
LOCK_AT = _re(r"\bat: (?:\[<[0-9a-f]+>\]\s*)?" + FUNC)
# Noise before a header: a login prompt, a syzkaller date, old lockdep's "[ ... ]" frame.
HEADER_PREFIX = _re(r"^(?:\S+ login: |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |\[ )")
# Header lines that continue the report already open instead of starting a new one.
FOLLOW_UPS = _re(
    r"^(?:Oops: [0-9a-fx]+ \[#\d+\]|invalid opcode: |Internal error: |"
    r"Kernel panic - not syncing: (?:Fatal exception|(?:kernel: )?panic_on_warn|softlockup: hung|"
    r"hung_task: blocked|Attempted to kill init|Aiee)|"
    r"WARNING: CPU: \d+ PID: \d+ at \S*(?:list_debug|refcount|debugobjects)\.c)"
)
# Lines that end a report.
REPORT_END = _re(r"^---\[ end (?:trace [0-9a-f]+|Kernel panic - not syncing.*) \]---|"
                 r"^---\[ end trace")
# The instruction pointer line, x86 and arm64 styles.
RIP = _re(r"^(?:RIP: (?:[0-9a-f]{4}:)?|IP: |pc : |PC is at |EIP: (?:[0-9a-f]{4}:)?)"
          r"(?:\[<[0-9a-f]+>\] )?" + FUNC + r"(?:\s+\[(?P<module>[\w-]+)\])?")
# A call-trace frame; a leading "? " marks an unreliable one.
FRAME = _re(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?(?P<unreliable>\? )?" + FUNC +
            r"(?:\s+\[(?P<module>[\w-]+)\])?")
# Parts of titles that vary between occurrences of the same crash.
TITLE_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_re(r"0x[0-9a-fA-F]+"), "ADDR"),
    (_re(r"\b[0-9a-fA-F]{8,}\b"), "ADDR"),
    (_re(r"(?<=[^\w.])\d+(?=\W|$)"), "NUM"),
)
