// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int harness_exporter_add(int a, int b)
{
	return a + b;
}
EXPORT_SYMBOL_GPL(harness_exporter_add);

static int __init exporter_init(void)
{
	pr_info("harness_exporter: loaded\n");
	return 0;
}

static void __exit exporter_exit(void)
{
	pr_info("harness_exporter: unloaded\n");
}

module_init(exporter_init);
module_exit(exporter_exit);
MODULE_LICENSE("GPL");
