package console

import (
	"fmt"

	"github.com/spf13/cobra"
)

// NewTrustCommand lists and forgets pinned node certificates.
func NewTrustCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "List or forget the node certificates this console has pinned",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List pinned node certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := LoadCache()
			if err != nil {
				return err
			}
			for _, a := range c.PinnedAddrs() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", a, c.Pins[a])
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "forget ADDRESS",
		Short: "Forget the pinned certificate of a node (after reinstalling it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := NormalizeEndpoint(args[0])
			if err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			c, err := LoadCache()
			if err != nil {
				return err
			}
			if _, ok := c.Pins[addr]; !ok {
				return exitf(ExitUsage, "no certificate is pinned for %s (see `tandem trust list`)", addr)
			}
			delete(c.Pins, addr)
			if err := c.Save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Forgot %s; the next connection will ask to trust it again.\n", addr)
			return nil
		},
	})
	return cmd
}
