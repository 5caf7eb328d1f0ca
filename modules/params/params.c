// SPDX-License-Identifier: GPL-2.0
/* Module parameters of several types, echoed on load so tests can check what arrived. */
#include <linux/init.h>
#include <linux/module.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Parameters of several types");

static int number = 7;
module_param(number, int, 0644);
MODULE_PARM_DESC(number, "an int");

static bool flag;
module_param(flag, bool, 0644);
MODULE_PARM_DESC(flag, "a bool");

static char *name = "world";
module_param(name, charp, 0644);
MODULE_PARM_DESC(name, "a string");

static int values[4];
static int n_values;
module_param_array(values, int, &n_values, 0644);
MODULE_PARM_DESC(values, "up to four ints");

static int __init params_init(void)
{
	int i, sum = 0;

	for (i = 0; i < n_values; i++)
		sum += values[i];
	pr_info("params: number=%d flag=%d name=%s values=%d sum=%d\n",
		number, flag, name, n_values, sum);
	if (number < 0) {
		pr_err("params: number must not be negative\n");
		return -EINVAL;
	}
	return 0;
}

static void __exit params_exit(void)
{
	pr_info("params: bye %s\n", name);
}

module_init(params_init);
module_exit(params_exit);
