// SPDX-License-Identifier: GPL-2.0
/* Planted bug: reads one element past a local array. */
#include <linux/module.h>

static volatile int index = 8;
static int sum;

static noinline int stack_oob_sum(void)
{
	int values[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	return values[index];
}

static int __init stack_oob_init(void)
{
	sum = stack_oob_sum();
	pr_info("stack_oob: read %d\n", sum);
	return 0;
}

static void __exit stack_oob_exit(void)
{
}

module_init(stack_oob_init);
module_exit(stack_oob_exit);
MODULE_LICENSE("GPL");
