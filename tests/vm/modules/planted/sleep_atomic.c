// SPDX-License-Identifier: GPL-2.0
/* Planted bug: sleeps while holding a spinlock. */
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/delay.h>

static DEFINE_SPINLOCK(lock);

static int __init sleep_atomic_init(void)
{
	spin_lock(&lock);
	msleep(10);
	spin_unlock(&lock);
	pr_info("sleep_atomic: slept under a spinlock\n");
	return 0;
}

static void __exit sleep_atomic_exit(void)
{
}

module_init(sleep_atomic_init);
module_exit(sleep_atomic_exit);
MODULE_LICENSE("GPL");
