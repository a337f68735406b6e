-- Reserved for the replicas work of issue 22, merged separately: the
-- integrator replaces this file with that branch's migration 0007.
SELECT 1;
