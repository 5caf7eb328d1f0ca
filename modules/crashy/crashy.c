// SPDX-License-Identifier: GPL-2.0
/*
 * A module that goes wrong on purpose, one way per `mode`, in init or (for *_exit modes) in
 * exit. The harness's oops tests load it with each mode and check what is reported.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/list.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/delay.h>
#include <linux/refcount.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel bugs on demand, for testing the harness");

static char *mode = "none";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "none, null_init, null_exit, warn, bug, list, atomic_sleep, refcount, "
		 "divzero, panic, loop");

static int divisor;
module_param(divisor, int, 0444);

static DEFINE_SPINLOCK(crashy_lock);
static LIST_HEAD(crashy_list);

struct item {
	struct list_head node;
	int value;
};

static noinline void crashy_null_write(void)
{
	int *p = NULL;

	*p = 42;
}

static noinline void crashy_list_corrupt(void)
{
	struct item *it = kmalloc(sizeof(*it), GFP_KERNEL);

	if (!it)
		return;
	list_add(&it->node, &crashy_list);
	list_add(&it->node, &crashy_list);	/* the same entry twice */
}

static noinline void crashy_sleep_in_atomic(void)
{
	spin_lock(&crashy_lock);
	msleep(10);
	spin_unlock(&crashy_lock);
}

static noinline void crashy_refcount_underflow(void)
{
	refcount_t ref = REFCOUNT_INIT(1);

	refcount_dec(&ref);	/* 1 -> 0 through dec: a refcount bug */
}

static noinline int crashy_divide(int value)
{
	volatile int numerator = value;	/* gcc folds 1 / x into compares; force a real idiv */

	return numerator / divisor;
}

static noinline void crashy_spin_forever(void)
{
	unsigned long flags;

	local_irq_save(flags);
	local_irq_restore(flags);
	preempt_disable();
	for (;;)
		cpu_relax();
}

static int __init crashy_init(void)
{
	pr_info("crashy: mode=%s\n", mode);
	if (!strcmp(mode, "null_init"))
		crashy_null_write();
	else if (!strcmp(mode, "warn"))
		WARN_ON(1);
	else if (!strcmp(mode, "bug"))
		BUG_ON(divisor == 0);
	else if (!strcmp(mode, "list"))
		crashy_list_corrupt();
	else if (!strcmp(mode, "atomic_sleep"))
		crashy_sleep_in_atomic();
	else if (!strcmp(mode, "refcount"))
		crashy_refcount_underflow();
	else if (!strcmp(mode, "divzero"))
		pr_info("crashy: %d\n", crashy_divide(1000));
	else if (!strcmp(mode, "panic"))
		panic("crashy: deliberate panic");
	else if (!strcmp(mode, "loop"))
		crashy_spin_forever();
	return 0;
}

static void __exit crashy_exit(void)
{
	if (!strcmp(mode, "null_exit"))
		crashy_null_write();
	pr_info("crashy: bye\n");
}

module_init(crashy_init);
module_exit(crashy_exit);
