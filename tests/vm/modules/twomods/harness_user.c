// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int harness_exporter_add(int a, int b);

static int __init user_init(void)
{
	pr_info("harness_user: 40 + 2 = %d\n", harness_exporter_add(40, 2));
	return 0;
}

static void __exit user_exit(void)
{
	pr_info("harness_user: unloaded\n");
}

module_init(user_init);
module_exit(user_exit);
MODULE_LICENSE("GPL");
